"""The shape comparison the contract tests rely on."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tests.contracts.shapes import drift, missing, model_paths, paths

DOC = {"Items": [{"Id": "a", "Count": 1, "State": {"Code": 0}}], "Attributes": {}, "Token": ""}


def test_paths_merge_list_elements_and_name_json_types() -> None:
    assert paths({"A": [{"B": 1}, {"C": "x"}], "D": None}) == {
        "A": {"array"},
        "A[]": {"object"},
        "A[].B": {"number"},
        "A[].C": {"string"},
        "D": {"null"},
    }


def test_drift_finds_extra_keys_and_type_changes_but_not_free_form_maps() -> None:
    same = {"Items": [{"Id": "b", "Count": 2.5, "State": {"Code": 1}}], "Attributes": {"Any": 1}, "Token": "t"}
    assert drift(DOC, same) == ([], [])
    extra, mismatched = drift(DOC, {"Items": [{"Id": 1, "Extra": True}], "Token": None})
    assert extra == ["Items[].Extra"]
    assert mismatched == [
        "Items[].Id: documented ['string'], got ['number']",
        "Token: documented ['string'], got ['null']",
    ]


def test_missing_names_only_keys_that_could_have_been_sent() -> None:
    assert missing(DOC, {"Items": [], "Token": ""}) == ["Attributes"]
    assert missing(DOC, {"Items": [{"Id": "a", "State": {}}]}) == [
        "Attributes",
        "Items[].Count",
        "Items[].State.Code",
        "Token",
    ]


class _Inner(BaseModel):
    Code: int = 0


class _Item(BaseModel):
    Id: str
    State: _Inner = Field(default_factory=_Inner)


class _Resp(BaseModel):
    Items: list[_Item] = []
    Token: str | None = None


def test_model_paths_follow_nested_models_and_lists() -> None:
    assert model_paths(_Resp) == {"Items", "Items[].Id", "Items[].State", "Items[].State.Code", "Token"}
