"""Reminders, importance, culture and a meeting's settings (responses requested, new time
proposals, conferencing, online meeting) as Exchange keeps them, through EWS and Graph.

What Exchange does, and where Microsoft says so:
- ReminderIsSet "indicates whether a reminder has been set"; ReminderMinutesBeforeStart is "the
  number of minutes before an event occurs when a reminder is displayed"; ReminderDueBy is "the
  date and time when the event occurs. This is used by the ReminderMinutesBeforeStart element to
  determine when the reminder is displayed":
  https://learn.microsoft.com/exchange/client-developer/web-service-reference/reminderisset
  https://learn.microsoft.com/exchange/client-developer/web-service-reference/reminderminutesbeforestart
  https://learn.microsoft.com/exchange/client-developer/web-service-reference/reminderdueby
  On a calendar item Exchange keeps ReminderDueBy at the start whatever a client writes, and a
  restriction on it is accepted (exchangelib's live-server test suite: "EWS always sets due date
  to 'start'"; reminder_due_by: "Filtering is accepted"):
  https://github.com/ecederstrand/exchangelib/blob/master/tests/test_items/test_basics.py
- Importance (Low, Normal, High) and Culture ("the culture for a given item", an xs:language):
  https://learn.microsoft.com/exchange/client-developer/web-service-reference/importance
  https://learn.microsoft.com/exchange/client-developer/web-service-reference/culture
- IsResponseRequested "indicates whether a response to an item is requested"; when the meeting
  request says no response is requested the attendee's client "SHOULD NOT send a Meeting
  Response object" (MS-OXOCAL 3.1.4.8.4), so the organizer's item records no response:
  https://learn.microsoft.com/exchange/client-developer/web-service-reference/isresponserequested
  https://learn.microsoft.com/openspecs/exchange_server_protocols/ms-oxocal/2bc03497-6c3b-48af-92ad-61a6a90d74fe
- AllowNewTimeProposal, ConferenceType, MeetingWorkspaceUrl and NetShowUrl are "read-writable
  for the organizer's calendar item. It is read-only for meeting requests and for attendees'
  calendar items"; IsOnlineMeeting "property is read-only":
  https://learn.microsoft.com/exchange/client-developer/web-service-reference/allownewtimeproposal
  https://learn.microsoft.com/exchange/client-developer/web-service-reference/conferencetype
  https://learn.microsoft.com/exchange/client-developer/web-service-reference/meetingworkspaceurl
  https://learn.microsoft.com/exchange/client-developer/web-service-reference/netshowurl
  https://learn.microsoft.com/exchange/client-developer/web-service-reference/isonlinemeeting
- Graph's event: isReminderOn, reminderMinutesBeforeStart, importance (low, normal, high),
  responseRequested ("Default is true"), allowNewTimeProposals ("The default is true"),
  isOnlineMeeting ("After you set isOnlineMeeting to true, Microsoft Graph initializes
  onlineMeeting. Subsequently, Outlook ignores any further changes to isOnlineMeeting, and the
  meeting remains available online") and onlineMeetingProvider ("After you set
  onlineMeetingProvider, Microsoft Graph initializes onlineMeeting. Subsequently, you can't
  change onlineMeetingProvider again"); a new event's reminder is on, 15 minutes before (the
  documented responses show "reminderMinutesBeforeStart": 15, "isReminderOn": true):
  https://learn.microsoft.com/graph/api/resources/event
  https://learn.microsoft.com/graph/api/multivaluelegacyextendedproperty-post-multivalueextendedproperties
- Graph accept's sendResponse: "true if a response is to be sent to the organizer":
  https://learn.microsoft.com/graph/api/event-accept
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from exchangelib import Attendee, CalendarItem, EWSDateTime, EWSTimeZone, Mailbox
from exchangelib.items import SEND_TO_ALL_AND_SAVE_COPY
from exchangelib.protocol import close_connections
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.models.attendee import Attendee as GraphAttendee
from msgraph.generated.models.attendee_type import AttendeeType
from msgraph.generated.models.date_time_time_zone import DateTimeTimeZone
from msgraph.generated.models.email_address import EmailAddress
from msgraph.generated.models.event import Event
from msgraph.generated.models.importance import Importance
from msgraph.generated.models.online_meeting_provider_type import OnlineMeetingProviderType
from msgraph.generated.models.response_type import ResponseType as GraphResponse
from msgraph.generated.users.item.events.events_request_builder import EventsRequestBuilder
from msgraph.generated.users.item.events.item.accept.accept_post_request_body import (
    AcceptPostRequestBody,
)

from sim.server import RunningSimulator
from tests.sim.conftest import ANN, BOB, CARA, SERVICE, exchangelib_account
from tests.sim.ews_soap import M, find_subjects, post_soap
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
    return EWSDateTime(2027, 10, day, hour, tzinfo=UTC)


def save(account: Any, subject: str, start: EWSDateTime, **fields: Any) -> Any:
    item = CalendarItem(
        account=account,
        folder=account.calendar,
        subject=subject,
        start=start,
        end=start + timedelta(hours=1),
        **fields,
    )
    item.save(send_meeting_invitations=SEND_TO_ALL_AND_SAVE_COPY)
    return item


def graph_event(graph: GraphSession, mailbox: str, subject: str) -> Any:
    query = RequestConfiguration(
        query_parameters=EventsRequestBuilder.EventsRequestBuilderGetQueryParameters(
            filter=f"subject eq '{subject}'"
        )
    )
    [event] = graph.run(
        graph.app.users.by_user_id(mailbox).events.get(request_configuration=query)
    ).value
    return event


def copy_of(account: Any, uid: str) -> Any:
    [found] = [item for item in account.calendar.all() if item.uid == uid]
    return found


def test_reminder_importance_and_culture_round_trip_through_ews(ann: Any) -> None:
    item = save(
        ann,
        "Reminded",
        at(1, 9),
        reminder_is_set=True,
        reminder_minutes_before_start=30,
        importance="High",
        culture="fr-FR",
    )

    fetched = ann.calendar.get(id=item.id)
    assert (fetched.reminder_is_set, fetched.reminder_minutes_before_start) == (True, 30)
    assert fetched.importance == "High"
    assert fetched.culture == "fr-FR"

    fetched.reminder_is_set = False
    fetched.importance = "Low"
    fetched.save(update_fields=["reminder_is_set", "importance"])
    again = ann.calendar.get(id=item.id)
    assert (again.reminder_is_set, again.importance) == (False, "Low")
    assert again.reminder_minutes_before_start == 30


def test_reminder_due_by_is_the_start_and_can_be_searched(
    ann: Any, simulator: RunningSimulator
) -> None:
    item = save(ann, "Due by", at(2, 9), reminder_is_set=True, reminder_due_by=at(1, 7))

    fetched = ann.calendar.get(id=item.id)
    assert fetched.reminder_due_by == at(2, 9)  # what the client wrote is not kept

    def due_by(constant: EWSDateTime) -> tuple[str, list[str]]:
        return find_subjects(
            simulator,
            ANN,
            '<t:IsEqualTo><t:FieldURI FieldURI="item:ReminderDueBy"/><t:FieldURIOrConstant>'
            f'<t:Constant Value="{constant.isoformat()}"/></t:FieldURIOrConstant></t:IsEqualTo>',
        )

    assert due_by(at(2, 9)) == ("NoError", ["Due by"])
    assert due_by(at(1, 7)) == ("NoError", [])


def test_graph_and_ews_share_reminder_importance_and_defaults(
    ann: Any, graph: GraphSession
) -> None:
    save(ann, "Shared settings", at(3, 9), reminder_minutes_before_start=45, importance="High")

    seen = graph_event(graph, ANN, "Shared settings")
    assert (seen.is_reminder_on, seen.reminder_minutes_before_start) == (False, 45)
    assert seen.importance == Importance.High

    graph.run(
        graph.app.users.by_user_id(ANN)
        .events.by_event_id(seen.id)
        .patch(
            Event(is_reminder_on=True, reminder_minutes_before_start=5, importance=Importance.Low)
        )
    )
    [fetched] = ann.calendar.filter(subject="Shared settings")
    assert (fetched.reminder_is_set, fetched.reminder_minutes_before_start) == (True, 5)
    assert fetched.importance == "Low"

    created = graph.run(
        graph.app.users.by_user_id(ANN).events.post(
            Event(
                subject="Graph defaults",
                start=DateTimeTimeZone(date_time="2027-10-03T11:00:00", time_zone="UTC"),
                end=DateTimeTimeZone(date_time="2027-10-03T12:00:00", time_zone="UTC"),
            )
        )
    )
    assert (created.is_reminder_on, created.reminder_minutes_before_start) == (True, 15)
    assert created.importance == Importance.Normal
    assert (created.response_requested, created.allow_new_time_proposals) == (True, True)
    assert (created.is_online_meeting, created.online_meeting) == (False, None)


def test_the_organizers_meeting_settings_reach_the_attendees(ann: Any, bob: Any) -> None:
    sent = save(
        ann,
        "Settings travel",
        at(4, 9),
        importance="High",
        allow_new_time_proposal=False,
        conference_type=1,  # NetShow
        meeting_workspace_url="https://workspace.contoso.test/m/1",
        net_show_url="https://netshow.contoso.test/s/1",
        required_attendees=[Attendee(mailbox=Mailbox(email_address=BOB))],
    )
    sent.refresh()

    received = copy_of(bob, sent.uid)
    received.refresh()
    assert received.importance == "High"
    assert received.allow_new_time_proposal is False
    assert received.conference_type == 1
    assert received.meeting_workspace_url == "https://workspace.contoso.test/m/1"
    assert received.net_show_url == "https://netshow.contoso.test/s/1"

    # Read-only on an attendee's copy: the organizer's values stay.
    received.allow_new_time_proposal = True
    received.net_show_url = "https://netshow.contoso.test/s/other"
    received.save(update_fields=["allow_new_time_proposal", "net_show_url"])
    received.refresh()
    assert received.allow_new_time_proposal is False
    assert received.net_show_url == "https://netshow.contoso.test/s/1"


def test_no_response_requested_keeps_responses_from_the_organizer_in_ews(
    ann: Any, bob: Any
) -> None:
    sent = save(
        ann,
        "No replies please",
        at(5, 9),
        is_response_requested=False,
        required_attendees=[Attendee(mailbox=Mailbox(email_address=BOB))],
    )
    sent.refresh()
    assert sent.is_response_requested is False
    received = copy_of(bob, sent.uid)
    assert bob.calendar.get(id=received.id).is_response_requested is False

    received.accept()

    assert bob.calendar.get(id=received.id).my_response_type == "Accept"
    sent.refresh()
    [bob_on_organizer] = sent.required_attendees
    assert bob_on_organizer.response_type == "Unknown"


def test_no_response_requested_keeps_responses_from_the_organizer_in_graph(
    graph: GraphSession,
) -> None:
    created = graph.run(
        graph.app.users.by_user_id(ANN).events.post(
            Event(
                subject="Graph no replies",
                start=DateTimeTimeZone(date_time="2027-10-06T09:00:00", time_zone="UTC"),
                end=DateTimeTimeZone(date_time="2027-10-06T10:00:00", time_zone="UTC"),
                response_requested=False,
                attendees=[
                    GraphAttendee(
                        email_address=EmailAddress(address=CARA), type=AttendeeType.Required
                    )
                ],
            )
        )
    )
    assert created.response_requested is False
    copy = graph_event(graph, CARA, "Graph no replies")
    assert copy.response_requested is False

    graph.run(
        graph.user(CARA)
        .me.events.by_event_id(copy.id)
        .accept.post(AcceptPostRequestBody(send_response=True))
    )

    assert graph_event(graph, CARA, "Graph no replies").response_status.response == (
        GraphResponse.Accepted
    )
    organizer = graph.run(graph.app.users.by_user_id(ANN).events.by_event_id(created.id).get())
    assert organizer.attendees[0].status.response == GraphResponse.None_


def test_an_online_meeting_stays_online(
    ann: Any, bob: Any, graph: GraphSession, simulator: RunningSimulator
) -> None:
    created = graph.run(
        graph.app.users.by_user_id(ANN).events.post(
            Event(
                subject="Online",
                start=DateTimeTimeZone(date_time="2027-10-07T09:00:00", time_zone="UTC"),
                end=DateTimeTimeZone(date_time="2027-10-07T10:00:00", time_zone="UTC"),
                is_online_meeting=True,
                attendees=[
                    GraphAttendee(
                        email_address=EmailAddress(address=BOB), type=AttendeeType.Required
                    )
                ],
            )
        )
    )
    assert created.is_online_meeting is True
    # No provider named: the calendar's default (the simulated organization's is Teams).
    assert created.online_meeting_provider == OnlineMeetingProviderType.TeamsForBusiness
    join_url = created.online_meeting.join_url
    assert join_url.startswith("https://teams.microsoft.com/l/meetup-join/")

    patched = graph.run(
        graph.app.users.by_user_id(ANN)
        .events.by_event_id(created.id)
        .patch(
            Event(
                is_online_meeting=False,
                online_meeting_provider=OnlineMeetingProviderType.SkypeForBusiness,
            )
        )
    )
    assert patched.is_online_meeting is True
    assert patched.online_meeting_provider == OnlineMeetingProviderType.TeamsForBusiness
    assert patched.online_meeting.join_url == join_url
    # The invitation carried it: the attendee's copy is the same online meeting.
    assert graph_event(graph, BOB, "Online").online_meeting.join_url == join_url
    # EWS reads the same flag, and refuses to set it.
    [through_ews] = ann.calendar.filter(subject="Online")
    assert through_ews.is_online_meeting is True
    root = post_soap(
        simulator,
        ANN,
        f"""<m:UpdateItem ConflictResolution="AlwaysOverwrite" MessageDisposition="SaveOnly"
            SendMeetingInvitationsOrCancellations="SendToNone"><m:ItemChanges><t:ItemChange>
          <t:ItemId Id="{through_ews.id}"/>
          <t:Updates><t:SetItemField><t:FieldURI FieldURI="calendar:IsOnlineMeeting"/>
            <t:CalendarItem><t:IsOnlineMeeting>false</t:IsOnlineMeeting></t:CalendarItem>
          </t:SetItemField></t:Updates></t:ItemChange></m:ItemChanges></m:UpdateItem>""",
    )
    assert root.findtext(f".//{M}ResponseCode") == "ErrorInvalidPropertySet"
    assert ann.calendar.get(id=through_ews.id).is_online_meeting is True
