"""A meeting's UID changed by UpdateItem, and cancellations: CancelCalendarItem's answer and a
cancellation nobody would receive.

What Exchange does, and where Microsoft says so:
- UID "uniquely identifies a calendar item" and is a writable CalendarItem property; UpdateItem's
  SetItemField "represents an update to a single property of an item":
  https://learn.microsoft.com/exchange/client-developer/web-service-reference/uid
  https://learn.microsoft.com/exchange/client-developer/web-service-reference/setitemfield
  Graph's iCalUId is the same identifier ("A unique identifier for an event across calendars"):
  https://learn.microsoft.com/graph/api/resources/event
- Cancelling a meeting with CreateItem/CancelCalendarItem and MessageDisposition
  SendAndSaveCopy: the documented response carries ``<m:Items><t:CalendarItem><t:ItemId .../>``,
  the id of the cancellation saved in Sent Items (exchangelib's CalendarItem.cancel() returns
  it), and the meeting "is now in the Deleted Items folder":
  https://learn.microsoft.com/exchange/client-developer/exchange-web-services/how-to-delete-appointments-and-cancel-meetings-by-using-ews-in-exchange
  A saved cancellation is a MeetingCancellation item:
  https://learn.microsoft.com/exchange/client-developer/web-service-reference/meetingcancellation
- A cancellation is a message to the attendees; with the organizer as the only attendee it has
  no recipient, and "this error will be returned when an attempt is made to send an item that
  has no recipients": ErrorInvalidRecipients ("if you call the CreateItem operation with a
  message disposition that causes the message to be sent, you will get ... ErrorInvalidRecipients"):
  https://learn.microsoft.com/exchange/client-developer/web-service-reference/responsecode
  Graph's cancel sends the same cancellation message ("This action allows the organizer of a
  meeting to send a cancellation message and cancel the event"), so it fails the same way:
  https://learn.microsoft.com/graph/api/event-cancel
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from exchangelib import Attendee, CalendarItem, EWSDateTime, EWSTimeZone, Mailbox
from exchangelib.errors import ErrorInvalidRecipients, ErrorItemNotFound
from exchangelib.items import SEND_TO_ALL_AND_SAVE_COPY, MeetingCancellation
from exchangelib.protocol import close_connections
from exchangelib.recurrence import DailyPattern, Recurrence
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.models.attendee import Attendee as GraphAttendee
from msgraph.generated.models.attendee_type import AttendeeType
from msgraph.generated.models.date_time_time_zone import DateTimeTimeZone
from msgraph.generated.models.email_address import EmailAddress
from msgraph.generated.models.event import Event
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.users.item.events.events_request_builder import EventsRequestBuilder
from msgraph.generated.users.item.events.item.cancel.cancel_post_request_body import (
    CancelPostRequestBody,
)

from sim.server import RunningSimulator
from tests.sim.conftest import ANN, BOB, CARA, SERVICE, exchangelib_account
from tests.sim.graph_clients import GraphSession, graph_session

UTC = EWSTimeZone("UTC")


@pytest.fixture(autouse=True)
def fresh_exchangelib_protocols() -> Iterator[None]:
    yield
    close_connections()


@pytest.fixture(scope="module", autouse=True)
def responses_are_schema_valid(simulator: RunningSimulator) -> Iterator[None]:
    yield
    assert simulator.ews.schema_failures == []


@pytest.fixture(scope="module")
def graph(simulator: RunningSimulator) -> Iterator[GraphSession]:
    with graph_session(simulator) as session:
        yield session


@pytest.fixture(scope="module")
def ann(simulator: RunningSimulator) -> Any:
    return exchangelib_account(simulator, ANN, as_user=SERVICE)


@pytest.fixture(scope="module")
def bob(simulator: RunningSimulator) -> Any:
    return exchangelib_account(simulator, BOB, as_user=SERVICE)


def at(day: int, hour: int) -> EWSDateTime:
    return EWSDateTime(2027, 12, day, hour, tzinfo=UTC)


def meeting(account: Any, subject: str, day: int, *attendees: str, **fields: Any) -> Any:
    item = CalendarItem(
        account=account,
        folder=account.calendar,
        subject=subject,
        start=at(day, 9),
        end=at(day, 10),
        required_attendees=[Attendee(mailbox=Mailbox(email_address=a)) for a in attendees] or None,
        **fields,
    )
    item.save(send_meeting_invitations=SEND_TO_ALL_AND_SAVE_COPY)
    item.refresh()
    return item


def test_set_item_field_on_the_uid_changes_it(ann: Any, graph: GraphSession) -> None:
    item = meeting(ann, "Renamed UID", 1, uid="first-uid@calbridge.test")

    item.uid = "second-uid@calbridge.test"
    item.save(update_fields=["uid"])

    assert ann.calendar.get(id=item.id).uid == "second-uid@calbridge.test"
    [seen] = graph.run(
        graph.app.users.by_user_id(ANN).events.get(
            request_configuration=_filter("uid eq 'second-uid@calbridge.test'")
        )
    ).value
    assert (seen.subject, seen.i_cal_u_id) == ("Renamed UID", "second-uid@calbridge.test")


def _filter(expression: str) -> Any:
    return RequestConfiguration(
        query_parameters=EventsRequestBuilder.EventsRequestBuilderGetQueryParameters(
            filter=expression
        )
    )


def test_cancel_answers_with_the_saved_cancellation(ann: Any, bob: Any) -> None:
    sent = meeting(ann, "Called off", 2, BOB, CARA)

    saved = sent.cancel()

    assert saved.id not in (None, sent.id)
    [cancellation] = list(ann.fetch(ids=[saved]))
    assert isinstance(cancellation, MeetingCancellation)
    assert cancellation.subject == "Canceled: Called off"
    assert cancellation.author.email_address == ANN
    assert sorted(r.email_address for r in cancellation.to_recipients) == [BOB, CARA]
    with pytest.raises(ErrorItemNotFound):
        sent.refresh()
    [bobs] = [i for i in bob.calendar.view(start=at(2, 0), end=at(3, 0)) if i.uid == sent.uid]
    assert bobs.is_cancelled is True


def test_cancelling_with_no_recipient_but_the_organizer_is_refused(ann: Any) -> None:
    alone = meeting(ann, "Only me", 3, ANN)

    with pytest.raises(ErrorInvalidRecipients):
        alone.cancel()

    kept = ann.calendar.get(id=alone.id)
    assert kept.subject == "Only me"
    assert kept.is_cancelled is False


def test_graph_cancel_with_no_recipient_but_the_organizer_is_refused(
    graph: GraphSession,
) -> None:
    events = graph.app.users.by_user_id(ANN).events
    created = graph.run(
        events.post(
            Event(
                subject="Graph only me",
                start=DateTimeTimeZone(date_time="2027-12-04T09:00:00", time_zone="UTC"),
                end=DateTimeTimeZone(date_time="2027-12-04T10:00:00", time_zone="UTC"),
                attendees=[
                    GraphAttendee(
                        email_address=EmailAddress(address=ANN), type=AttendeeType.Required
                    )
                ],
            )
        )
    )

    with pytest.raises(ODataError) as refused:
        graph.run(events.by_event_id(created.id).cancel.post(CancelPostRequestBody()))

    assert refused.value.response_status_code == 400
    assert refused.value.error.code == "ErrorInvalidRecipients"
    assert graph.run(events.by_event_id(created.id).get()).is_cancelled is False


def test_an_edited_occurrence_may_send_its_series_uid_back(ann: Any) -> None:
    # exchangelib leaves UID out of its saves only for an Occurrence; an Exception's save sends
    # the series' UID back unchanged, which changes nothing.
    master = CalendarItem(
        account=ann,
        folder=ann.calendar,
        subject="Series keeps its UID",
        start=at(6, 9),
        end=at(6, 10),
        uid="series-uid@calbridge.test",
        recurrence=Recurrence(pattern=DailyPattern(interval=1), start=at(6, 9).date(), number=2),
    )
    master.save()
    [first, _] = ann.calendar.view(start=at(6, 0), end=at(8, 0))
    first.location = "Room 1"
    first.save(update_fields=["location"])
    exception = ann.calendar.get(id=first.id)
    assert exception.type == "Exception"

    exception.location = "Room 2"
    exception.save(update_fields=["location", "uid"])

    again = ann.calendar.get(id=first.id)
    assert (again.location, again.uid) == ("Room 2", "series-uid@calbridge.test")
