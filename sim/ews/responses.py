"""The response-message frame every EWS operation shares:
``m:<Op>Response / m:ResponseMessages / m:<Op>ResponseMessage`` with ResponseClass and
ResponseCode, or MessageText + ResponseCode + DescriptiveLinkKey for an error (the order
messages.xsd's ResponseMessageType requires).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from sim.ews.errors import EwsError
from sim.ews.soap import add, m
from sim.store import SimError

Target = TypeVar("Target")


def messages_container(body: Any, operation: str) -> Any:
    response = add(body, m(f"{operation}Response"))
    return add(response, m("ResponseMessages"))


def success_message(messages: Any, operation: str) -> Any:
    message = add(messages, m(f"{operation}ResponseMessage"), ResponseClass="Success")
    add(message, m("ResponseCode"), "NoError")
    return message


def error_message(messages: Any, operation: str, error: EwsError) -> Any:
    message = add(messages, m(f"{operation}ResponseMessage"), ResponseClass="Error")
    add(message, m("MessageText"), error.message)
    add(message, m("ResponseCode"), error.code)
    add(message, m("DescriptiveLinkKey"), "0")
    return message


def store_errors_as_ews(error: SimError) -> EwsError:
    return EwsError(error.code, error.message)


def answer_each(
    messages: Any,
    operation: str,
    targets: Iterable[Target],
    answer: Callable[[Any, Target], None],
    on_error: Callable[[Any], None] | None = None,
) -> None:
    """One response message per target: ``answer(message, target)`` fills a success message;
    an EwsError or store refusal turns that target's message into an error (``on_error`` may
    add elements an error message of this operation must still carry)."""
    for target in targets:
        message = success_message(messages, operation)
        try:
            answer(message, target)
        except (EwsError, SimError) as failure:
            error = failure if isinstance(failure, EwsError) else store_errors_as_ews(failure)
            messages.remove(message)
            failed = error_message(messages, operation, error)
            if on_error is not None:
                on_error(failed)


def empty_items(failed: Any) -> None:
    """ItemInfoResponseMessageType requires Items even in an error message (as Exchange sends)."""
    add(failed, m("Items"))
