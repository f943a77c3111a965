"""The OpenAI wire format of zoo serve: stream deltas, stop strings, error shapes."""

from __future__ import annotations

import pytest

from zoo.errors import AmbiguousRefError, IntegrityError, NotFoundError
from zoo.workers.serve_openai import DeltaText, RequestError, error_body, error_status


class Words:
    """Token t decodes to the word w<t>, words joined by spaces."""

    def decode(self, ids, skip_special_tokens=True):
        return " ".join(f"w{t}" for t in ids)


def test_deltas_add_up_to_the_text():
    text = DeltaText(Words(), ())
    deltas = [text.add(t) for t in (1, 22, 3)]
    assert deltas == ["w1", " w22", " w3"]
    assert text.finish("w1 w22 w3") == ""


def test_a_stop_string_is_never_sent():
    text = DeltaText(Words(), ("w22",))
    sent = text.add(1) + text.add(22)  # "w1 w22": the stop arrived
    assert "w22" not in sent and "w1 w22".startswith(sent)
    final = "w1 "  # what generate returns: the text cut before the stop
    assert sent + text.finish(final) == final


def test_text_that_may_start_a_stop_is_held_back():
    text = DeltaText(Words(), ("w3 w4",))
    sent = text.add(1) + text.add(3)
    assert not sent.endswith("w3")  # "w3" could be the start of the stop string
    assert sent + text.add(5) + text.finish("w1 w3 w5") == "w1 w3 w5"


@pytest.mark.parametrize("exc,status", [(RequestError("bad"), 400), (NotFoundError("x"), 404),
                                        (AmbiguousRefError("x"), 404),
                                        (IntegrityError("blob"), 500), (RuntimeError(""), 500)])
def test_error_shapes(exc, status):
    assert error_status(exc)[0] == status
    body = error_body(exc)["error"]
    assert body["code"] == status and body["message"] and body["type"]
