"""Character sheets (docs/format.md, "Character sheets"): parsing rules and the exact rendered form."""

import pytest

from grouprp.config import SheetField, default_sheet_schema
from grouprp.sheets import SheetSchema, parse_sheet, render_bio

SCHEMA = SheetSchema(default_sheet_schema())


def parse(source, name="Someone"):
    return parse_sheet(source, name, SCHEMA)


def test_rendered_form_is_exact():
    sheet = ("Name: Orla Venn\nAge: 34\nLooks:\n- Height: 6'1\"\n- A brass compass on a chain\n"
             "Backstory: Orla sailed the Glass Sea for a decade.\nStrengths: Patient, Sharp-eyed")
    assert render_bio(sheet, "Orla", SCHEMA) == (
        "**Character Name**: Orla Venn\n"
        "**Age**: 34\n"
        "**Appearance**:\n"
        "- Height: 6'1\"\n"
        "- A brass compass on a chain\n"
        "**Biography**:\n"
        "Orla sailed the Glass Sea for a decade.\n"
        "**Good Attributes**:\n"
        "- Patient\n"
        "- Sharp-eyed")


def test_fields_come_out_in_schema_order_whatever_the_input_order():
    values = parse("Equipment: a lantern\nAge: 40\nName: Dov")
    assert list(values) == ["Character Name", "Age", "Equipment"]


@pytest.mark.parametrize("line", [
    "Age: 19", "age: 19", "AGE : 19", "Age - 19", "**Age**: 19", "**Age:** 19", "[b]Age:[/b] 19", "[b]Age[/b]: 19",
    "<b>Age</b>: 19", "<b>Age:</b> 19", "[B]Age[/B] - 19", "<strong>Age</strong>: 19",
])
def test_key_styles(line):
    assert parse(line)["Age"] == "19"


def test_aliases_map_to_schema_fields():
    values = parse("Full Name: Ivo Brandt\nSpecies: Dwarf\nMageblood: Ember\nMagic Class: Warding\n"
                   "Magic Training: Two years at Kessel\nJob: Ferryman\nWeaknesses: Gambling\nGear: A pole\n"
                   "Trivia: Hates rain")
    assert values == {
        "Character Name": "Ivo Brandt", "Race": "Dwarf", "Mageblood Type": "Ember",
        "Favored Magic Class": "Warding", "Previous Magic Training": "Two years at Kessel",
        "Occupation/Profession": "Ferryman", "Bad Attributes": ["Gambling"], "Equipment": ["A pole"],
        "Other Information": ["Hates rain"],
    }


def test_unknown_keys_become_other_information_only_when_they_look_like_field_names():
    values = parse("Bio: Raised by monks.\nHe said: never again.\nFavorite Food: Plum cake\n"
                   "**secret wish**: to fly\nthe long road north: was cold")
    assert values["Biography"] == "Raised by monks.\nHe said: never again."
    assert values["Other Information"] == ["Favorite Food: Plum cake", "secret wish: to fly; the long road north: was cold"]


def test_a_list_marker_line_is_never_a_key():
    values = parse("Appearance:\n- Hair: silver\n* Eyes: grey")
    assert values["Appearance"] == ["Hair: silver", "Eyes: grey"]
    assert "Other Information" not in values


def test_text_before_the_first_key_is_biography():
    values = parse("A wanderer with no past.\nAge: 30\nBio: Found on a beach.")
    assert values["Biography"] == "A wanderer with no past.\nFound on a beach."


@pytest.mark.parametrize("value, items", [
    ("brave, loud, kind", ["brave", "loud", "kind"]),
    ("brave; loud, but kind", ["brave", "loud, but kind"]),
    ("- brave\n- loud", ["brave", "loud"]),
    ("1. brave\n2) loud\n\u2022 kind", ["brave", "loud", "kind"]),
    ("she is brave in a fight, and she is loud when she is drunk", ["she is brave in a fight, and she is loud when she is drunk"]),
    ("A single trait", ["A single trait"]),
])
def test_list_values(value, items):
    assert parse(f"Strengths: {value}" if "\n" not in value else f"Strengths:\n{value}")["Good Attributes"] == items


def test_scalar_and_text_keep_the_first_value_lists_accumulate():
    values = parse("Age: 20\nAge: 99\nBio: first\nHistory: second\nItems: rope\nGear: lamp, oil")
    assert values["Age"] == "20"
    assert values["Biography"] == "first"
    assert values["Equipment"] == ["rope", "lamp", "oil"]


@pytest.mark.parametrize("absent", ["", "N/A", "n/a", "-"])
def test_absent_values_are_omitted(absent):
    values = parse(f"Age: {absent}\nStrengths: {absent}\nBio: {absent}")
    assert values == {"Character Name": "Someone"}


def test_character_name_defaults_to_the_name_in_the_thread():
    assert render_bio("Age: 3", "Pip", SCHEMA) == "**Character Name**: Pip\n**Age**: 3"


def test_values_are_cleaned_like_posts():
    assert parse("Bio: [i]Quiet[/i] &amp; [color=red]kind[/color]")["Biography"] == "*Quiet* & kind"


def test_mapping_sheets_use_the_same_aliases_and_splitting():
    sheet = {"name": "Hale", "Age": 52, "species": "Elf", "Strengths": ["brave", "stubborn"],
             "flaws": "reckless; proud", "Favorite Food": "plum cake", "notes": ["likes maps"]}
    assert parse(sheet) == {
        "Character Name": "Hale", "Age": "52", "Race": "Elf", "Good Attributes": ["brave", "stubborn"],
        "Bad Attributes": ["reckless", "proud"], "Other Information": ["Favorite Food: plum cake", "likes maps"],
    }


def test_no_sheet_means_no_bio():
    assert render_bio(None, "Pip", SCHEMA) is None


def test_the_schema_is_configurable():
    schema = SheetSchema([SheetField("Character Name", "scalar", ["name"]), SheetField("Powers", "list", ["abilities"]),
                          SheetField("Other Information", "list", [])])
    assert render_bio("Name: Zed\nAbilities: flight, x-ray vision\nAge: 4", "Zed", schema) == (
        "**Character Name**: Zed\n**Powers**:\n- flight\n- x-ray vision\n**Other Information**:\n- Age: 4")
