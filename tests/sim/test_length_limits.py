"""Subject and location lengths as Exchange keeps them, through EWS (exchangelib, and raw SOAP for
what exchangelib will not send) and Graph (msgraph-sdk).

What Microsoft documents:

- "The subject is limited to 255 characters"
  (https://learn.microsoft.com/exchange/client-developer/web-service-reference/subject).
- An appointment's location: "The string is limited to 255 characters"
  (https://learn.microsoft.com/javascript/api/outlook/office.location, setAsync).

Exchange does not refuse a longer value: it cuts it, whichever protocol wrote it, so a client
that compares what it wrote with what it reads back sees the cut value (exchangelib's author on
what EWS does with a longer subject: "EWS will truncate the subject at 255 chars",
https://github.com/nylas/exchangelib/pull/68). The same comment says a "..." is added where the
cut falls; no Microsoft page says so, and the simulator keeps the first 255 characters as they
were. exchangelib itself refuses subjects over 255 characters (its ``CharField``), so a longer
subject goes out as raw SOAP here.

Characters are counted as Exchange (.NET) and Outlook's JavaScript API count string lengths: in
UTF-16 code units, so a character outside the Basic Multilingual Plane (most emoji) counts two.
Such a character is dropped whole, never split. A client that counts code points, as Python and
exchangelib do, can send a subject it thinks is within the limit and read back a shorter one.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from exchangelib import Attendee, CalendarItem, EWSDateTime, EWSTimeZone, Mailbox
from exchangelib.protocol import close_connections
from lxml import etree
from msgraph.generated.models.date_time_time_zone import DateTimeTimeZone
from msgraph.generated.models.event import Event
from msgraph.generated.models.location import Location

from sim.server import RunningSimulator
from tests.sim.conftest import ANN, BOB, CARA, PASSWORDS, exchangelib_account
from tests.sim.graph_clients import GraphSession, graph_session

UTC = EWSTimeZone("UTC")
M = "{http://schemas.microsoft.com/exchange/services/2006/messages}"
T = "{http://schemas.microsoft.com/exchange/services/2006/types}"
LIMIT = 255


def long_text(label: str, length: int = 300) -> str:
    """``label`` padded with digits to ``length`` characters: where a cut falls shows."""
    digits = "".join(str(n % 10) for n in range(length))
    return (label + " " + digits)[:length]


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


def soap(sim: RunningSimulator, address: str, body: str) -> Any:
    envelope = f"""<?xml version="1.0" encoding="utf-8"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"
  xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"
  xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">
  <s:Header><t:RequestServerVersion Version="Exchange2016"/></s:Header>
  <s:Body>{body}</s:Body>
</s:Envelope>"""
    token = base64.b64encode(f"{address}:{PASSWORDS[address]}".encode()).decode()
    response = requests.post(
        sim.urls["ews"],
        data=envelope.encode(),
        headers={"Authorization": f"Basic {token}", "Content-Type": "text/xml; charset=utf-8"},
        timeout=10,
    )
    assert response.status_code == 200
    root = etree.fromstring(response.content)
    assert root.findtext(f".//{M}ResponseCode") == "NoError"
    return root


def test_ews_keeps_the_first_255_characters_of_a_subject(simulator: RunningSimulator) -> None:
    subject = long_text("EWS subject")
    root = soap(
        simulator,
        ANN,
        '<m:CreateItem SendMeetingInvitations="SendToNone"><m:Items><t:CalendarItem>'
        f"<t:Subject>{subject}</t:Subject>"
        "<t:Start>2027-07-05T14:00:00Z</t:Start><t:End>2027-07-05T15:00:00Z</t:End>"
        "</t:CalendarItem></m:Items></m:CreateItem>",
    )
    item_id = root.find(f".//{T}ItemId").get("Id")

    ann = exchangelib_account(simulator, ANN)
    fetched = ann.calendar.get(id=item_id)
    assert fetched.subject == subject[:LIMIT]

    # A subject set again by UpdateItem is cut the same way.
    longer = long_text("Updated subject", 400)
    soap(
        simulator,
        ANN,
        '<m:UpdateItem ConflictResolution="AlwaysOverwrite" '
        'SendMeetingInvitationsOrCancellations="SendToNone"><m:ItemChanges><t:ItemChange>'
        f'<t:ItemId Id="{item_id}"/><t:Updates><t:SetItemField>'
        '<t:FieldURI FieldURI="item:Subject"/>'
        f"<t:CalendarItem><t:Subject>{longer}</t:Subject></t:CalendarItem>"
        "</t:SetItemField></t:Updates></t:ItemChange></m:ItemChanges></m:UpdateItem>",
    )
    assert ann.calendar.get(id=item_id).subject == longer[:LIMIT]


def test_ews_keeps_the_first_255_characters_of_a_location(simulator: RunningSimulator) -> None:
    ann = exchangelib_account(simulator, ANN)
    location = long_text("Room with a long name")
    item = CalendarItem(
        account=ann,
        folder=ann.calendar,
        subject="Long location",
        start=EWSDateTime(2027, 7, 6, 14, tzinfo=UTC),
        end=EWSDateTime(2027, 7, 6, 15, tzinfo=UTC),
        location=location,
    )
    item.save()

    assert ann.calendar.get(id=item.id).location == location[:LIMIT]
    item.location = long_text("Another room", 500)
    item.save(update_fields=["location"])
    assert ann.calendar.get(id=item.id).location == long_text("Another room", 500)[:LIMIT]


def test_graph_keeps_the_first_255_characters_of_subject_and_location(
    simulator: RunningSimulator, graph: GraphSession
) -> None:
    subject = long_text("Graph subject")
    location = long_text("Graph room")
    events = graph.app.users.by_user_id(BOB).events

    created = graph.run(
        events.post(
            Event(
                subject=subject,
                start=DateTimeTimeZone(date_time="2027-07-07T14:00:00", time_zone="UTC"),
                end=DateTimeTimeZone(date_time="2027-07-07T15:00:00", time_zone="UTC"),
                location=Location(display_name=location),
            )
        )
    )

    # The answer to the POST is the event as stored, and so is every later read.
    assert created.subject == subject[:LIMIT]
    assert created.location.display_name == location[:LIMIT]
    again = graph.run(events.by_event_id(created.id).get())
    assert (again.subject, again.location.display_name) == (subject[:LIMIT], location[:LIMIT])
    patched = graph.run(
        events.by_event_id(created.id).patch(Event(subject=long_text("Patched", 256)))
    )
    assert patched.subject == long_text("Patched", 256)[:LIMIT]
    # The same item through EWS.
    bob = exchangelib_account(simulator, BOB)
    [item] = [
        i
        for i in bob.calendar.view(
            start=EWSDateTime(2027, 7, 7, tzinfo=UTC), end=EWSDateTime(2027, 7, 8, tzinfo=UTC)
        )
        if i.subject.startswith("Patched")
    ]
    assert (item.subject, item.location) == (long_text("Patched", 256)[:LIMIT], location[:LIMIT])


def test_a_value_of_exactly_255_characters_is_kept_whole(graph: GraphSession) -> None:
    subject = long_text("Exactly the limit", LIMIT)
    created = graph.run(
        graph.app.users.by_user_id(ANN).events.post(
            Event(
                subject=subject,
                start=DateTimeTimeZone(date_time="2027-07-08T14:00:00", time_zone="UTC"),
                end=DateTimeTimeZone(date_time="2027-07-08T15:00:00", time_zone="UTC"),
            )
        )
    )

    assert created.subject == subject


def test_characters_outside_the_bmp_count_two_and_are_not_split(
    simulator: RunningSimulator, graph: GraphSession
) -> None:
    # 250 letters and 3 emoji: 253 characters to Python and exchangelib, 256 UTF-16 units to
    # Exchange. The third emoji does not fit and goes whole.
    subject = "s" * 250 + "\U0001f4c5" * 3
    ann = exchangelib_account(simulator, ANN)
    item = CalendarItem(
        account=ann,
        folder=ann.calendar,
        subject=subject,
        start=EWSDateTime(2027, 7, 9, 14, tzinfo=UTC),
        end=EWSDateTime(2027, 7, 9, 15, tzinfo=UTC),
    )
    item.save()

    assert ann.calendar.get(id=item.id).subject == "s" * 250 + "\U0001f4c5" * 2
    created = graph.run(
        graph.app.users.by_user_id(ANN).events.post(
            Event(
                subject="g" * 254 + "\U0001f4c5",
                start=DateTimeTimeZone(date_time="2027-07-09T16:00:00", time_zone="UTC"),
                end=DateTimeTimeZone(date_time="2027-07-09T17:00:00", time_zone="UTC"),
            )
        )
    )
    assert created.subject == "g" * 254


def test_a_cancelled_copy_keeps_its_prefix_within_the_limit(simulator: RunningSimulator) -> None:
    # The attendee's copy of a cancelled meeting is renamed "Canceled: <subject>"; the stored
    # subject still holds at most 255 characters, so the end of a long subject gives way.
    subject = long_text("Meeting that will be cancelled", LIMIT)
    ann = exchangelib_account(simulator, ANN)
    meeting = CalendarItem(
        account=ann,
        folder=ann.calendar,
        subject=subject,
        start=EWSDateTime(2027, 7, 12, 14, tzinfo=UTC),
        end=EWSDateTime(2027, 7, 12, 15, tzinfo=UTC),
        required_attendees=[Attendee(mailbox=Mailbox(email_address=CARA))],
    )
    meeting.save(send_meeting_invitations="SendToAllAndSaveCopy")
    meeting.refresh()

    meeting.cancel()

    cara = exchangelib_account(simulator, CARA)
    [copy] = [
        i
        for i in cara.calendar.view(
            start=EWSDateTime(2027, 7, 12, tzinfo=UTC), end=EWSDateTime(2027, 7, 13, tzinfo=UTC)
        )
        if i.uid == meeting.uid
    ]
    assert copy.is_cancelled is True
    assert copy.subject == ("Canceled: " + subject)[:LIMIT]
