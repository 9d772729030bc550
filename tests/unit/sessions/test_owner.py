"""Ids that name the worker owning a piece of state (`toolway serve --workers N`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from toolway.sessions import owner


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    yield
    owner.set_worker(None)


def test_outside_a_worker_ids_are_untagged() -> None:
    assert owner.tagged("abc") == "abc"
    assert owner.owner_of("abc") is None
    assert owner.tag_foreign("state") is None


@pytest.mark.parametrize("index", [0, 1, 9, 10, 63])
def test_a_worker_tags_what_it_mints(index: int) -> None:
    owner.set_worker(index)
    ident = owner.tagged("0123abcd")
    assert ident == f"w{index}-0123abcd"
    assert owner.owner_of(ident) == index


@pytest.mark.parametrize("ident", ["", "w", "w-1", "wx-1", "w64-abc", "w123-abc", "w1abc", "x1-abc", "W1-abc"])
def test_malformed_or_foreign_ids_have_no_owner(ident: str) -> None:
    assert owner.owner_of(ident) is None


def test_an_upstream_token_comes_back_unchanged() -> None:
    owner.set_worker(3)
    tagged = owner.tag_foreign("their.opaque-token")
    assert tagged is not None and owner.owner_of(tagged) == 3
    assert owner.untag_foreign(tagged) == "their.opaque-token"
    assert owner.untag_foreign(owner.tagged("parked")) is None  # the gateway's own parked call


def test_worker_index_is_bounded() -> None:
    with pytest.raises(ValueError):
        owner.set_worker(owner.MAX_WORKERS)
