"""Graph events through msgraph-sdk: meetings reaching attendees, responses reaching organizers,
updates and cancellations, transactionId de-duplication, extended properties, calendarView of a
recurring series, time zones, access rules and refused input."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.models.attendee import Attendee
from msgraph.generated.models.attendee_type import AttendeeType
from msgraph.generated.models.body_type import BodyType
from msgraph.generated.models.date_time_time_zone import DateTimeTimeZone
from msgraph.generated.models.day_of_week import DayOfWeek
from msgraph.generated.models.email_address import EmailAddress
from msgraph.generated.models.event import Event
from msgraph.generated.models.event_type import EventType
from msgraph.generated.models.item_body import ItemBody
from msgraph.generated.models.location import Location
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.patterned_recurrence import PatternedRecurrence
from msgraph.generated.models.recurrence_pattern import RecurrencePattern
from msgraph.generated.models.recurrence_pattern_type import RecurrencePatternType
from msgraph.generated.models.recurrence_range import RecurrenceRange
from msgraph.generated.models.recurrence_range_type import RecurrenceRangeType
from msgraph.generated.models.response_type import ResponseType as GraphResponse
from msgraph.generated.models.sensitivity import Sensitivity as GraphSensitivity
from msgraph.generated.models.single_value_legacy_extended_property import (
    SingleValueLegacyExtendedProperty,
)
from msgraph.generated.users.item.calendar_view.calendar_view_request_builder import (
    CalendarViewRequestBuilder,
)
from msgraph.generated.users.item.events.events_request_builder import EventsRequestBuilder
from msgraph.generated.users.item.events.item.accept.accept_post_request_body import (
    AcceptPostRequestBody,
)
from msgraph.generated.users.item.events.item.cancel.cancel_post_request_body import (
    CancelPostRequestBody,
)
from msgraph.generated.users.item.events.item.decline.decline_post_request_body import (
    DeclinePostRequestBody,
)
from msgraph.generated.users.item.events.item.event_item_request_builder import (
    EventItemRequestBuilder,
)

from sim.people import Outlook
from sim.server import RunningSimulator
from sim.store import ExtendedPropertyKey, Recurrence, ResponseType
from tests.sim.conftest import ANN, BOB, CARA
from tests.sim.graph_clients import GraphSession, graph_session, graph_simulator

PROPERTY_SET = "66f5a359-4659-4830-9070-00047ec6ac6e"
APPOINTMENT_ID = f"String {{{PROPERTY_SET}}} Name AppointmentId"
APPOINTMENT_KEY = ExtendedPropertyKey(PROPERTY_SET, "AppointmentId")
EASTERN = "Eastern Standard Time"


@pytest.fixture(scope="module")
def simulator() -> Iterator[RunningSimulator]:
    with graph_simulator() as running:
        yield running


@pytest.fixture(scope="module")
def graph(simulator: RunningSimulator) -> Iterator[GraphSession]:
    with graph_session(simulator) as session:
        yield session


def when(day: int, hour: int, minute: int = 0) -> DateTimeTimeZone:
    """A wall-clock time in March 2027, Eastern time."""
    return DateTimeTimeZone(
        date_time=f"2027-03-{day:02d}T{hour:02d}:{minute:02d}:00", time_zone=EASTERN
    )


def meeting(subject: str, day: int, *attendees: str, **extra: Any) -> Event:
    return Event(
        subject=subject,
        body=ItemBody(content_type=BodyType.Text, content="Agenda: private notes"),
        start=when(day, 10),
        end=when(day, 11),
        location=Location(display_name="Room 4"),
        attendees=[
            Attendee(email_address=EmailAddress(address=a, name=a), type=AttendeeType.Required)
            for a in attendees
        ],
        **extra,
    )


def events_of(graph: GraphSession, address: str) -> Any:
    return graph.app.users.by_user_id(address).events


def copy_in(sim: RunningSimulator, address: str, uid: str) -> Any:
    found = [item for item in Outlook(sim.store, address).find(uid=uid) if item.master_id is None]
    return found[0] if found else None


def odata_error(graph: GraphSession, coroutine: Any) -> ODataError:
    with pytest.raises(ODataError) as caught:
        graph.run(coroutine)
    return caught.value


def test_meeting_created_through_graph_reaches_the_attendee(
    graph: GraphSession, simulator: RunningSimulator
) -> None:
    created = graph.run(events_of(graph, ANN).post(meeting("Graph invite", 1, BOB)))

    assert created.is_organizer is True
    assert created.attendees[0].status.response == GraphResponse.None_
    copy = copy_in(simulator, BOB, created.i_cal_u_id)
    assert copy is not None
    assert copy.subject == "Graph invite"
    seen_by_bob = graph.run(events_of(graph, BOB).by_event_id(_graph_id(graph, BOB, copy)).get())
    assert seen_by_bob.is_organizer is False
    assert seen_by_bob.organizer.email_address.address == ANN
    assert seen_by_bob.response_status.response == GraphResponse.NotResponded
    assert seen_by_bob.i_cal_u_id == created.i_cal_u_id
    assert seen_by_bob.start.date_time.startswith("2027-03-01T15:00:00")  # 10:00 EST in UTC


def _graph_id(graph: GraphSession, address: str, item: Any) -> str:
    """Find an item's Graph id through Graph itself (by its iCalendar UID)."""
    config = RequestConfiguration(
        query_parameters=EventsRequestBuilder.EventsRequestBuilderGetQueryParameters(
            filter=f"uid eq '{item.uid}'"
        )
    )
    listed = graph.run(events_of(graph, address).get(request_configuration=config))
    assert len(listed.value) == 1
    return str(listed.value[0].id)


def test_attendee_decline_with_a_user_token_reaches_the_organizer(
    graph: GraphSession, simulator: RunningSimulator
) -> None:
    created = graph.run(events_of(graph, ANN).post(meeting("Decline me", 2, BOB, CARA)))
    bob = graph.user(BOB)
    copy_id = _graph_id(graph, BOB, copy_in(simulator, BOB, created.i_cal_u_id))

    graph.run(
        bob.me.events.by_event_id(copy_id).decline.post(
            DeclinePostRequestBody(comment="Away", send_response=True)
        )
    )

    organizer = graph.run(events_of(graph, ANN).by_event_id(created.id).get())
    responses = {a.email_address.address: a.status.response for a in organizer.attendees}
    assert responses == {BOB: GraphResponse.Declined, CARA: GraphResponse.None_}
    assert copy_in(simulator, BOB, created.i_cal_u_id) is None
    gone = odata_error(graph, bob.me.events.by_event_id(copy_id).get())
    assert gone.response_status_code == 404
    assert gone.error.code == "ErrorItemNotFound"


def test_accept_records_the_response_time_on_the_organizer_item(
    graph: GraphSession, simulator: RunningSimulator
) -> None:
    created = graph.run(events_of(graph, ANN).post(meeting("Accept me", 3, BOB)))
    copy_id = _graph_id(graph, BOB, copy_in(simulator, BOB, created.i_cal_u_id))

    graph.run(
        graph.user(BOB)
        .me.events.by_event_id(copy_id)
        .accept.post(AcceptPostRequestBody(send_response=True))
    )

    organizer = graph.run(events_of(graph, ANN).by_event_id(created.id).get())
    assert organizer.attendees[0].status.response == GraphResponse.Accepted
    assert organizer.attendees[0].status.time > datetime(2020, 1, 1, tzinfo=UTC)
    bobs = graph.run(events_of(graph, BOB).by_event_id(copy_id).get())
    assert bobs.response_status.response == GraphResponse.Accepted
    assert bobs.show_as.value == "busy"


def test_organizer_patch_moves_the_attendee_copies(
    graph: GraphSession, simulator: RunningSimulator
) -> None:
    created = graph.run(events_of(graph, ANN).post(meeting("Move me", 4, BOB)))

    patched = graph.run(
        events_of(graph, ANN)
        .by_event_id(created.id)
        .patch(Event(start=when(5, 14, 30), end=when(5, 15, 30), subject="Moved"))
    )

    assert patched.subject == "Moved"
    assert patched.change_key != created.change_key
    copy = copy_in(simulator, BOB, created.i_cal_u_id)
    assert copy.subject == "Moved"
    assert copy.start == datetime(2027, 3, 5, 19, 30, tzinfo=UTC)
    assert copy.response_type == ResponseType.NO_RESPONSE


def test_cancel_removes_the_meeting_and_cancels_the_copies(
    graph: GraphSession, simulator: RunningSimulator
) -> None:
    created = graph.run(events_of(graph, ANN).post(meeting("Cancel me", 8, BOB)))

    graph.run(
        events_of(graph, ANN)
        .by_event_id(created.id)
        .cancel.post(CancelPostRequestBody(comment="x"))
    )

    assert (
        odata_error(graph, events_of(graph, ANN).by_event_id(created.id).get()).response_status_code
        == 404
    )
    copy = copy_in(simulator, BOB, created.i_cal_u_id)
    assert copy.is_cancelled is True
    assert copy.subject == "Canceled: Cancel me"


def test_only_the_organizer_can_cancel(graph: GraphSession, simulator: RunningSimulator) -> None:
    created = graph.run(events_of(graph, ANN).post(meeting("Not yours", 8, BOB)))
    copy_id = _graph_id(graph, BOB, copy_in(simulator, BOB, created.i_cal_u_id))

    refused = odata_error(
        graph, events_of(graph, BOB).by_event_id(copy_id).cancel.post(CancelPostRequestBody())
    )

    assert refused.response_status_code == 400
    assert "organizer" in refused.error.message
    assert copy_in(simulator, BOB, created.i_cal_u_id).is_cancelled is False


def test_organizer_delete_sends_cancellations(
    graph: GraphSession, simulator: RunningSimulator
) -> None:
    # "If the event is a meeting, deleting the event on the organizer's calendar sends a
    # cancellation message to the meeting attendees."
    # (https://learn.microsoft.com/graph/api/event-delete)
    created = graph.run(events_of(graph, ANN).post(meeting("Delete me", 9, BOB)))

    graph.run(events_of(graph, ANN).by_event_id(created.id).delete())

    assert copy_in(simulator, ANN, created.i_cal_u_id) is None
    assert copy_in(simulator, BOB, created.i_cal_u_id).is_cancelled is True


def test_permanent_delete_removes_the_event_and_answers_204_without_a_body(
    graph: GraphSession, simulator: RunningSimulator
) -> None:
    # "Permanently delete an event and place it in the Purges folder in the dumpster in the
    # mailbox. Email clients such as Outlook or Outlook on the web can't access permanently
    # deleted items." POST /users/{id}/events/{id}/permanentDelete; "If successful, this method
    # returns a 204 No Content response code."
    # (https://learn.microsoft.com/graph/api/event-permanentdelete)
    created = graph.run(events_of(graph, ANN).post(meeting("Purge me", 10)))
    item = events_of(graph, ANN).by_event_id(created.id)

    graph.run(item.permanent_delete.post())

    assert copy_in(simulator, ANN, created.i_cal_u_id) is None
    assert odata_error(graph, item.get()).response_status_code == 404


def test_a_patch_with_a_stale_if_match_is_refused_with_412_and_changes_nothing(
    graph: GraphSession, simulator: RunningSimulator
) -> None:
    # Graph's "Update event" page (https://learn.microsoft.com/graph/api/event-update) lists no
    # If-Match header; Exchange Online compares one with the event's change key and answers a
    # stale one with 412 ErrorIrresolvableConflict, "The send or update operation could not be
    # performed because the change key passed in the request does not match the current change
    # key for the item." (https://learn.microsoft.com/answers/questions/271870). The event's
    # @odata.etag is W/"<changeKey>".
    created = graph.run(events_of(graph, ANN).post(meeting("Guarded", 11, BOB)))
    item = events_of(graph, ANN).by_event_id(created.id)
    edited = graph.run(item.patch(Event(subject="Edited in Outlook")))

    def if_match(change_key: str) -> RequestConfiguration[Any]:
        config: RequestConfiguration[Any] = RequestConfiguration()
        config.headers.add("If-Match", f'W/"{change_key}"')
        return config

    refused = odata_error(graph, item.patch(Event(subject="Stale"), if_match(created.change_key)))

    assert refused.response_status_code == 412
    assert refused.error.code == "ErrorIrresolvableConflict"
    assert Outlook(simulator.store, ANN).find(uid=created.i_cal_u_id)[0].subject == (
        "Edited in Outlook"
    )
    accepted = graph.run(item.patch(Event(subject="Current"), if_match(edited.change_key)))
    assert accepted.subject == "Current"


def test_transaction_id_makes_a_retried_create_return_the_first_event(
    graph: GraphSession, simulator: RunningSimulator
) -> None:
    first = graph.run(events_of(graph, CARA).post(meeting("Once only", 10, transaction_id="tx-42")))
    again = graph.run(events_of(graph, CARA).post(meeting("Once only", 10, transaction_id="tx-42")))
    other = graph.run(events_of(graph, CARA).post(meeting("Once only", 10, transaction_id="tx-43")))

    assert again.id == first.id
    assert first.transaction_id == "tx-42"
    assert other.id != first.id
    assert len(Outlook(simulator.store, CARA).find(subject="Once only")) == 2


def test_extended_property_round_trip_filter_and_expand(
    graph: GraphSession, simulator: RunningSimulator
) -> None:
    def tagged(value: str) -> list[SingleValueLegacyExtendedProperty]:
        return [SingleValueLegacyExtendedProperty(id=APPOINTMENT_ID, value=value)]

    wanted = graph.run(
        events_of(graph, CARA).post(
            meeting("Tagged A", 11, single_value_extended_properties=tagged("appt-1"))
        )
    )
    graph.run(
        events_of(graph, CARA).post(
            meeting("Tagged B", 11, single_value_extended_properties=tagged("appt-2"))
        )
    )
    stored = simulator.store.get_item(_internal(simulator, CARA, "Tagged A"))
    assert stored.extended_properties == {APPOINTMENT_KEY: "appt-1"}

    # The GUID's case does not matter, as in Graph.
    upper = f"String {{{PROPERTY_SET.upper()}}} Name AppointmentId"
    config = RequestConfiguration(
        query_parameters=EventsRequestBuilder.EventsRequestBuilderGetQueryParameters(
            filter=(
                "singleValueExtendedProperties/any("
                f"ep: ep/id eq '{upper}' and ep/value eq 'appt-1')"
            ),
            expand=[f"singleValueExtendedProperties($filter=id eq '{APPOINTMENT_ID}')"],
            select=["subject"],
        )
    )
    found = graph.run(events_of(graph, CARA).get(request_configuration=config))
    assert [e.id for e in found.value] == [wanted.id]
    assert found.value[0].subject == "Tagged A"
    assert found.value[0].body is None  # $select left it out
    expanded = found.value[0].single_value_extended_properties
    assert [(p.id, p.value) for p in expanded] == [(APPOINTMENT_ID, "appt-1")]

    plain = graph.run(events_of(graph, CARA).by_event_id(wanted.id).get())
    assert plain.single_value_extended_properties is None  # only when expanded

    graph.run(
        events_of(graph, CARA)
        .by_event_id(wanted.id)
        .patch(Event(single_value_extended_properties=tagged("appt-9")))
    )
    assert simulator.store.get_item(stored.id).extended_properties[APPOINTMENT_KEY] == "appt-9"


def test_extended_property_set_elsewhere_is_visible_through_graph(
    graph: GraphSession, simulator: RunningSimulator
) -> None:
    item = Outlook(simulator.store, CARA).create_event(
        "Set by EWS", datetime(2027, 3, 12, 9), datetime(2027, 3, 12, 10)
    )
    simulator.store.update_item(CARA, item.id, {}, extended={APPOINTMENT_KEY: "from-ews"})

    config = RequestConfiguration(
        query_parameters=EventItemRequestBuilder.EventItemRequestBuilderGetQueryParameters(
            expand=[f"singleValueExtendedProperties($filter=id eq '{APPOINTMENT_ID}')"]
        )
    )
    graph_id = _graph_id(graph, CARA, item)
    event = graph.run(
        events_of(graph, CARA).by_event_id(graph_id).get(request_configuration=config)
    )

    assert [(p.id, p.value) for p in event.single_value_extended_properties] == [
        (APPOINTMENT_ID, "from-ews")
    ]


def _internal(sim: RunningSimulator, address: str, subject: str) -> str:
    (item,) = Outlook(sim.store, address).find(subject=subject)
    return str(item.id)


def test_calendar_view_expands_a_series_with_an_exception(
    graph: GraphSession, simulator: RunningSimulator
) -> None:
    ann = Outlook(simulator.store, ANN)
    weekly = Recurrence(pattern="weekly", days_of_week=["Monday"], count=4)
    master = ann.create_series(
        "Weekly sync", datetime(2027, 4, 5, 9), datetime(2027, 4, 5, 10), weekly
    )
    ann.edit_occurrence(
        master.id, 2, start=datetime(2027, 4, 13, 15), end=datetime(2027, 4, 13, 16)
    )
    ann.delete_occurrence(master.id, 3)

    config = RequestConfiguration(
        query_parameters=CalendarViewRequestBuilder.CalendarViewRequestBuilderGetQueryParameters(
            start_date_time="2027-04-01T00:00:00Z", end_date_time="2027-05-01T00:00:00Z"
        )
    )
    config.headers.add("Prefer", f'outlook.timezone="{EASTERN}"')
    view = graph.run(
        graph.app.users.by_user_id(ANN).calendar_view.get(request_configuration=config)
    )

    shown = [
        (e.type, e.start.date_time[:16], e.start.time_zone)
        for e in view.value
        if e.subject == "Weekly sync"
    ]
    assert shown == [
        (EventType.Occurrence, "2027-04-05T09:00", EASTERN),
        (EventType.Exception, "2027-04-13T15:00", EASTERN),
        (EventType.Occurrence, "2027-04-26T09:00", EASTERN),
    ]
    series = {e.series_master_id for e in view.value if e.subject == "Weekly sync"}
    assert len(series) == 1
    master_event = graph.run(events_of(graph, ANN).by_event_id(series.pop()).get())
    assert master_event.type == EventType.SeriesMaster
    assert master_event.recurrence.pattern.type == RecurrencePatternType.Weekly
    assert master_event.recurrence.pattern.days_of_week == [DayOfWeek.Monday]
    assert master_event.recurrence.range.type == RecurrenceRangeType.Numbered
    assert master_event.recurrence.range.number_of_occurrences == 4


def test_recurring_series_created_through_graph(
    graph: GraphSession, simulator: RunningSimulator
) -> None:
    series = Event(
        subject="Monthly review",
        start=when(15, 13),
        end=when(15, 14),
        recurrence=PatternedRecurrence(
            pattern=RecurrencePattern(
                type=RecurrencePatternType.AbsoluteMonthly, interval=1, day_of_month=15
            ),
            range=RecurrenceRange(
                type=RecurrenceRangeType.EndDate,
                start_date=date(2027, 3, 15),
                end_date=date(2027, 6, 30),
            ),
        ),
    )
    created = graph.run(events_of(graph, CARA).post(series))

    assert created.type == EventType.SeriesMaster
    stored = simulator.store.get_item(_internal(simulator, CARA, "Monthly review"))
    assert stored.recurrence is not None
    assert stored.recurrence.pattern == "absoluteMonthly"
    assert stored.recurrence.end_date == date(2027, 6, 30)
    occurrences = simulator.store.calendar_view(
        CARA, datetime(2027, 3, 1, tzinfo=UTC), datetime(2027, 7, 1, tzinfo=UTC)
    )
    assert [o.start.date() for o in occurrences if o.subject == "Monthly review" and o.start] == [
        date(2027, 3, 15),
        date(2027, 4, 15),
        date(2027, 5, 15),
        date(2027, 6, 15),
    ]


def test_windows_and_iana_zones_in_and_out(graph: GraphSession) -> None:
    event = Event(
        subject="Zones",
        start=DateTimeTimeZone(
            date_time="2027-03-20T09:00:00", time_zone="W. Europe Standard Time"
        ),
        end=DateTimeTimeZone(date_time="2027-03-20T10:00:00", time_zone="Europe/Berlin"),
    )
    created = graph.run(events_of(graph, CARA).post(event))
    config = RequestConfiguration()
    config.headers.add("Prefer", 'outlook.timezone="Pacific Standard Time"')

    fetched = graph.run(
        events_of(graph, CARA).by_event_id(created.id).get(request_configuration=config)
    )

    assert created.start.date_time.startswith("2027-03-20T08:00:00")  # UTC without Prefer
    assert created.start.time_zone == "UTC"
    assert fetched.start.date_time.startswith("2027-03-20T01:00:00")  # PDT
    assert fetched.start.time_zone == "Pacific Standard Time"
    assert fetched.original_start_time_zone == "W. Europe Standard Time"


def test_private_events_show_their_sensitivity(
    graph: GraphSession, simulator: RunningSimulator
) -> None:
    cara = Outlook(simulator.store, CARA)
    item = cara.create_event("Doctor", datetime(2027, 3, 22, 8), datetime(2027, 3, 22, 9))
    cara.mark_private(item.id)

    fetched = graph.run(events_of(graph, CARA).by_event_id(_graph_id(graph, CARA, item)).get())

    assert fetched.sensitivity == GraphSensitivity.Private


def test_user_tokens_reach_only_their_own_mailbox(graph: GraphSession) -> None:
    bob = graph.user(BOB)

    own = graph.run(bob.me.events.get())
    denied = odata_error(graph, bob.users.by_user_id(ANN).events.get())
    limited = odata_error(graph, graph.limited_app.users.by_user_id(BOB).events.get())
    unknown = odata_error(graph, graph.app.users.by_user_id("nobody@contoso.test").events.get())
    app_me = odata_error(graph, graph.app.me.events.get())

    assert own.value is not None
    assert (denied.response_status_code, denied.error.code) == (403, "ErrorAccessDenied")
    assert (limited.response_status_code, limited.error.code) == (403, "ErrorAccessDenied")
    assert unknown.response_status_code == 404
    assert app_me.response_status_code == 400
    reached = graph.run(graph.limited_app.users.by_user_id(ANN).events.get())
    assert reached.value is not None


def test_user_object_id_works_like_the_address(graph: GraphSession) -> None:
    user = graph.run(graph.app.users.by_user_id(CARA).get())

    by_id = graph.run(graph.app.users.by_user_id(user.id).events.get())
    by_address = graph.run(graph.app.users.by_user_id(CARA).events.get())

    assert user.mail == CARA
    assert [e.id for e in by_id.value] == [e.id for e in by_address.value]


def test_bad_input_is_refused_with_a_reason_and_changes_nothing(
    graph: GraphSession, simulator: RunningSimulator
) -> None:
    before = len(simulator.store.calendar_items(CARA))
    unknown_zone = Event(
        subject="Bad zone",
        start=DateTimeTimeZone(date_time="2027-03-20T09:00:00", time_zone="Mars/Olympus"),
        end=DateTimeTimeZone(date_time="2027-03-20T10:00:00", time_zone="Mars/Olympus"),
    )
    backwards = Event(subject="Backwards", start=when(20, 11), end=when(20, 10))
    unknown_property = meeting("Extra", 20)
    unknown_property.additional_data = {"colour": "red"}

    zone_error = odata_error(graph, events_of(graph, CARA).post(unknown_zone))
    backwards_error = odata_error(graph, events_of(graph, CARA).post(backwards))
    property_error = odata_error(graph, events_of(graph, CARA).post(unknown_property))
    malformed = odata_error(graph, events_of(graph, CARA).by_event_id("not-an-id").get())

    assert zone_error.response_status_code == 400
    assert "Mars/Olympus" in zone_error.error.message
    assert backwards_error.response_status_code == 400
    assert "end" in backwards_error.error.message
    assert property_error.response_status_code == 400
    assert "colour" in property_error.error.message
    assert (malformed.response_status_code, malformed.error.code) == (
        400,
        "ErrorInvalidIdMalformed",
    )
    assert len(simulator.store.calendar_items(CARA)) == before


def test_events_list_pages_with_top_and_next_link(
    graph: GraphSession, simulator: RunningSimulator
) -> None:
    ann = Outlook(simulator.store, ANN)
    for n in range(3):
        ann.create_event(f"Paged {n}", datetime(2027, 5, 3 + n, 9), datetime(2027, 5, 3 + n, 10))
    config = RequestConfiguration(
        query_parameters=EventsRequestBuilder.EventsRequestBuilderGetQueryParameters(
            filter="subject ge 'Paged' and subject lt 'Pagee'",
            top=2,
            orderby=["start/dateTime"],
        )
    )

    first = graph.run(events_of(graph, ANN).get(request_configuration=config))
    second = graph.run(events_of(graph, ANN).with_url(first.odata_next_link).get())

    assert [e.subject for e in first.value] == ["Paged 0", "Paged 1"]
    assert [e.subject for e in second.value] == ["Paged 2"]
    assert second.odata_next_link is None


def test_timestamps_move_forward(graph: GraphSession) -> None:
    created = graph.run(events_of(graph, CARA).post(meeting("Stamped", 25)))
    patched = graph.run(
        events_of(graph, CARA).by_event_id(created.id).patch(Event(subject="Stamped 2"))
    )

    assert created.created_date_time <= patched.last_modified_date_time
    assert patched.last_modified_date_time - created.created_date_time < timedelta(minutes=1)


def test_calendar_events_path_and_series_instances(
    graph: GraphSession, simulator: RunningSimulator
) -> None:
    daily = Recurrence(pattern="daily", interval=2, count=3)
    master = Outlook(simulator.store, BOB).create_series(
        "Every other day", datetime(2027, 6, 1, 8), datetime(2027, 6, 1, 9), daily
    )
    calendar_events = graph.app.users.by_user_id(BOB).calendar.events
    listed = graph.run(calendar_events.get())
    (series,) = [e for e in listed.value if e.subject == "Every other day"]
    instances = graph.app.users.by_user_id(BOB).events.by_event_id(series.id).instances
    window = RequestConfiguration(
        query_parameters=instances.InstancesRequestBuilderGetQueryParameters(
            start_date_time="2027-06-01T00:00:00Z", end_date_time="2027-06-04T00:00:00Z"
        )
    )

    occurrences = graph.run(instances.get(request_configuration=window))

    assert series.type == EventType.SeriesMaster
    assert master.uid == series.i_cal_u_id
    assert [o.start.date_time[:10] for o in occurrences.value] == ["2027-06-01", "2027-06-03"]
    assert {o.series_master_id for o in occurrences.value} == {series.id}
    assert len({o.i_cal_u_id for o in occurrences.value}) == 2  # one per occurrence
