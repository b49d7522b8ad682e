"""SillyTavern saved chats (`.jsonl`), one-on-one and group: one chat file is one thread.

The layout, as SillyTavern writes and reads it (`src/endpoints/chats.js`, `public/script.js`,
`public/scripts/group-chats.js`): one JSON object per line. The first line may be the chat's header: up to 1.14
a one-on-one chat's `{user_name, character_name, create_date, chat_metadata}` and no header in group chats; from
1.15 both kinds start with `{chat_metadata, user_name: "unused", character_name: "unused"}`. A header is told, as
SillyTavern tells it, by its `chat_metadata`. Every other line is a message: `name` (the speaker), `is_user`
(the human's persona), `is_system` (hidden from the prompt: `/hide` sets it, and SillyTavern's own notices carry
it), `mes` (the text shown, which is the chosen swipe: SillyTavern copies `swipes[swipe_id]` into it when a swipe
is chosen, and an edit changes both), `swipes` and `swipe_id` (the alternatives of a model reply), `extra`
(`type: "narrator"` for /sys narration) and, in group chats, `original_avatar` (the speaker's card file).

Here the user's messages are posts of the user's character (the thread's `user`), every other speaker is a
character the model writes; hidden messages and narration are left out and counted, and so are the swipes not
chosen. The name macros ({{user}}, {{char}}, <USER>, <BOT>, <CHAR>, any case) are replaced by the names, as
SillyTavern does when it builds a prompt: {{char}} is the speaking character, and in a user's message the one
who answers it (in a one-on-one chat, the only one).
"""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from grouprp.schema import Malformed, Thread
from grouprp.sources.cards import replace_macros
from grouprp.sources.threads import Invalid, _kind, make_post, read_json_lines

UNUSED = "unused"  # the header's user_name and character_name since SillyTavern 1.15


def looks_like_sillytavern(first: Any) -> bool:
    """Whether the first record of a .jsonl file is a SillyTavern chat's header or message."""
    return isinstance(first, dict) and ("chat_metadata" in first or ("mes" in first and "posts" not in first))


def read_sillytavern(path: Path, root: Path, max_post_chars: int,
                     left_out: Optional[Counter] = None) -> Iterator[Union[Thread, Malformed]]:
    """The chat in `path` as one Thread (its id: the path below `root` without `.jsonl`), or one Malformed naming
    the line at fault. `left_out` counts hidden_messages, narrator_messages and swipes_not_chosen."""
    counts: Counter = Counter()
    thread_id = _thread_id(path, root)
    header: dict = {}
    messages: list[tuple[int, dict]] = []
    for number, obj in read_json_lines(path):
        if isinstance(obj, Malformed):
            yield obj
            return
        if not isinstance(obj, dict):
            yield Malformed(f"{path}:{number}", f"expected a JSON object (a message), got {_kind(obj)}")
            return
        if not messages and not header and "chat_metadata" in obj:
            header = obj
            continue
        messages.append((number, obj))
    if not header and not messages:
        yield Malformed(str(path), "empty file: no chat in it")
        return
    user = _header_name(header, "user_name")
    character = _header_name(header, "character_name")
    number = 0
    try:
        speakers = []  # (line, message, name, is_user) of the messages kept
        for number, message in messages:
            if "mes" not in message:
                raise Invalid("a message without `mes` (its text)")
            if not isinstance(message["mes"], str):
                raise Invalid(f"`mes`: expected a string, got {_kind(message['mes'])}")
            is_user = message.get("is_user") is True
            swipes = message.get("swipes")
            if isinstance(swipes, list) and len(swipes) > 1:
                counts["swipes_not_chosen"] += len(swipes) - 1
            if message.get("is_system") is True:
                counts["hidden_messages"] += 1
                continue
            extra = message.get("extra")
            if isinstance(extra, dict) and extra.get("type") == "narrator":
                counts["narrator_messages"] += 1
                continue
            name = message.get("name")
            if name is None or (isinstance(name, str) and not name.strip()):
                name = user if is_user else character
                if not name:
                    raise Invalid("a message without `name` (who speaks), and no name in the chat's header")
            if not isinstance(name, str):
                raise Invalid(f"`name`: expected a string, got {_kind(name)}")
            speakers.append((number, message, name.strip(), is_user))
        user = user or next((name for _, _, name, is_user in speakers if is_user), None)
        posts = []
        for index, (number, message, name, is_user) in enumerate(speakers):
            char = name if not is_user else _answering(speakers, index) or character
            text = replace_macros(message["mes"], user=user, char=char)
            posts.append(make_post(text, None, name, "the message", max_post_chars))
    except Invalid as exc:
        yield Malformed(f"{path}:{number}", str(exc))
        return
    if left_out is not None:
        left_out.update(counts)
    yield Thread(id=thread_id, posts=tuple(posts), title=path.stem, user=user, where=str(path))


def _answering(speakers: list, index: int) -> Optional[str]:
    """The character who answers the user's message at `index`: the next one to speak, else the last before."""
    nearest = itertools.chain(range(index + 1, len(speakers)), range(index - 1, -1, -1))  # no copies of the chat
    return next((speakers[i][2] for i in nearest if not speakers[i][3]), None)


def _header_name(header: dict, key: str) -> Optional[str]:
    value = header.get(key)
    return value.strip() if isinstance(value, str) and value.strip() and value != UNUSED else None


def _thread_id(path: Path, root: Path) -> str:
    """A chat's path below data.path without its suffix (its file name when data.path is the file)."""
    return (path.relative_to(root) if root.is_dir() else Path(path.name)).with_suffix("").as_posix()
