"""EWS contract: reading and writing calendar items beyond meetings — exchangelib's filter(),
exclude(), order_by() and paging on basic fields, every recurrence pattern and range round
trip, occurrence / recurring-master navigation, delegate writes, Exchange 2007 time zones,
ConvertId between id formats, and AppendToItemField (raw SOAP: exchangelib never sends it).
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from exchangelib import (
    BASIC,
    DELEGATE,
    Account,
    Attendee,
    Build,
    CalendarItem,
    Configuration,
    Credentials,
    EWSDateTime,
    EWSTimeZone,
    Mailbox,
    Version,
)
from exchangelib.properties import ENTRY_ID, EWS_ID, HEX_ENTRY_ID, AlternateId
from exchangelib.protocol import close_connections
from exchangelib.recurrence import (
    AbsoluteMonthlyPattern,
    AbsoluteYearlyPattern,
    DailyPattern,
    EndDatePattern,
    NoEndPattern,
    NumberedPattern,
    Recurrence,
    RelativeMonthlyPattern,
    RelativeYearlyPattern,
    WeeklyPattern,
)
from lxml import etree

from sim.server import RunningSimulator
from tests.sim.conftest import ANN, BOB, CARA, PASSWORDS, SERVICE, exchangelib_account

TZ = EWSTimeZone("America/Toronto")
T = "{http://schemas.microsoft.com/exchange/services/2006/types}"


@pytest.fixture(autouse=True)
def fresh_exchangelib_protocols() -> Iterator[None]:
    yield
    close_connections()


@pytest.fixture(scope="module", autouse=True)
def responses_are_schema_valid(simulator: RunningSimulator) -> Iterator[None]:
    yield
    assert simulator.ews.schema_failures == []


@pytest.fixture(scope="module")
def bob(simulator: RunningSimulator) -> Any:
    return exchangelib_account(simulator, BOB, auth="basic")


def at(month: int, day: int, hour: int, minute: int = 0) -> EWSDateTime:
    return EWSDateTime(2027, month, day, hour, minute, tzinfo=TZ)


def save(account: Any, subject: str, start: EWSDateTime, hours: float = 1, **fields: Any) -> Any:
    item = CalendarItem(
        account=account,
        folder=account.calendar,
        subject=subject,
        start=start,
        end=start + datetime.timedelta(hours=hours),
        **fields,
    )
    item.save()
    return item


def test_filter_exclude_order_and_paging_on_basic_fields(bob: Any) -> None:
    for n, hour in enumerate((9, 11, 13, 15, 17)):
        save(bob, f"Clinic slot {n}", at(6, 1, hour), location="Room A" if n % 2 else "Room B")
    save(bob, "Lunch", at(6, 1, 12))

    calendar = bob.calendar
    afternoon = calendar.filter(start__gte=at(6, 1, 12), subject__startswith="Clinic")
    assert sorted(i.subject for i in afternoon) == [
        "Clinic slot 2",
        "Clinic slot 3",
        "Clinic slot 4",
    ]

    in_room_a = calendar.filter(subject__contains="slot").exclude(location="Room B")
    assert sorted(i.subject for i in in_room_a) == ["Clinic slot 1", "Clinic slot 3"]

    either = calendar.filter(subject__in=["Lunch", "Clinic slot 0"]).order_by("-start")
    assert [i.subject for i in either] == ["Lunch", "Clinic slot 0"]

    paged = calendar.filter(subject__icontains="CLINIC").order_by("start")
    paged.page_size = 2  # three FindItem pages through IndexedPageItemView
    assert [i.subject for i in paged] == [f"Clinic slot {n}" for n in range(5)]
    assert [i.subject for i in paged[1:3]] == ["Clinic slot 1", "Clinic slot 2"]
    assert calendar.filter(start__lt=at(6, 1, 10), end__gt=at(6, 1, 9, 30)).count() == 1


@pytest.mark.parametrize(
    ("pattern", "boundary", "expected_starts"),
    [
        (
            DailyPattern(interval=2),
            EndDatePattern(start=datetime.date(2027, 7, 5), end=datetime.date(2027, 7, 11)),
            [(7, 5), (7, 7), (7, 9), (7, 11)],
        ),
        (
            WeeklyPattern(interval=2, weekdays=[2, 4], first_day_of_week=1),
            NumberedPattern(start=datetime.date(2027, 7, 5), number=4),
            [(7, 6), (7, 8), (7, 20), (7, 22)],
        ),
        (
            AbsoluteMonthlyPattern(interval=1, day_of_month=15),
            NoEndPattern(start=datetime.date(2027, 7, 5)),
            [(7, 15), (8, 15), (9, 15), (10, 15)],
        ),
        (
            RelativeMonthlyPattern(interval=1, weekday=5, week_number=5),  # last Friday
            NumberedPattern(start=datetime.date(2027, 7, 5), number=3),
            [(7, 30), (8, 27), (9, 24)],
        ),
        (
            AbsoluteYearlyPattern(day_of_month=20, month=8),
            NumberedPattern(start=datetime.date(2027, 7, 5), number=2),
            [(8, 20)],  # the second one is in 2028, outside the window
        ),
        (
            RelativeYearlyPattern(weekday=1, week_number=1, month=9),  # first Monday of September
            EndDatePattern(start=datetime.date(2027, 7, 5), end=datetime.date(2029, 1, 1)),
            [(9, 6)],
        ),
    ],
    ids=[
        "daily",
        "weekly",
        "absolute-monthly",
        "relative-monthly",
        "absolute-yearly",
        "relative-yearly",
    ],
)
def test_recurrence_patterns_round_trip(
    bob: Any, pattern: Any, boundary: Any, expected_starts: list[tuple[int, int]]
) -> None:
    subject = f"Series {type(pattern).__name__}"
    first_month, first_day = expected_starts[0]
    master = save(
        bob,
        subject,
        at(first_month, first_day, 8),
        recurrence=Recurrence(pattern=pattern, boundary=boundary),
    )

    fetched = bob.calendar.get(id=master.id)
    window = bob.calendar.view(start=at(7, 1, 0), end=at(10, 31, 0))

    assert fetched.type == "RecurringMaster"
    assert fetched.recurrence.pattern == pattern
    assert fetched.recurrence.boundary == boundary
    assert [
        (o.start.astimezone(TZ).month, o.start.astimezone(TZ).day)
        for o in window
        if o.subject == subject
    ] == expected_starts
    assert all(o.start.astimezone(TZ).hour == 8 for o in window if o.subject == subject)


def test_occurrence_and_master_navigation(bob: Any) -> None:
    master = save(
        bob,
        "Navigation series",
        at(11, 1, 7),
        recurrence=Recurrence(
            pattern=DailyPattern(interval=1), start=datetime.date(2027, 11, 1), number=3
        ),
    )

    third = bob.calendar.get(id=master.id).occurrence(3)
    third.refresh()
    assert (third.type, third.start) == ("Occurrence", at(11, 3, 7))
    assert third.original_start == at(11, 3, 7)

    back = third.recurring_master()
    back.refresh()
    assert back.id == master.id
    assert back.type == "RecurringMaster"


def test_delegate_writes_into_the_delegated_calendar(simulator: RunningSimulator) -> None:
    delegate = exchangelib_account(simulator, CARA, as_user=SERVICE, access=DELEGATE)

    save(delegate, "Set up by the assistant", at(6, 8, 10))

    [stored] = simulator.person(CARA).find(subject="Set up by the assistant")
    assert stored.organizer is not None
    assert stored.organizer.address == CARA


def test_exchange_2007_clients_use_meeting_time_zone(simulator: RunningSimulator) -> None:
    # Built by hand: the shared helper compares ``version`` with a string, which exchangelib's
    # Version does not support.
    config = Configuration(
        service_endpoint=simulator.urls["ews"],
        credentials=Credentials(ANN, PASSWORDS[ANN]),
        auth_type=BASIC,
        version=Version(build=Build(8, 3, 83, 6)),  # Exchange 2007 SP3
    )
    account = Account(ANN, config=config, autodiscover=False, access_type=DELEGATE)
    item = save(account, "Old client", at(6, 9, 9))

    fetched = account.calendar.get(id=item.id)

    assert fetched.start == at(6, 9, 9)
    # 2007 has no StartTimeZone; MeetingTimeZone carries only a TimeZoneName, which exchangelib
    # does not read back (as against a real Exchange 2007) — the zone it sent was kept.
    assert fetched._start_timezone is None
    [stored] = simulator.person(ANN).find(subject="Old client")
    assert stored.time_zone == "America/Toronto"


def test_convert_id_between_formats(bob: Any) -> None:
    item = save(bob, "Converted", at(6, 10, 9))

    [entry] = bob.protocol.convert_ids(
        [AlternateId(id=item.id, format=EWS_ID, mailbox=BOB)], destination_format=ENTRY_ID
    )
    [hex_entry] = bob.protocol.convert_ids(
        [AlternateId(id=entry.id, format=ENTRY_ID, mailbox=BOB)],
        destination_format=HEX_ENTRY_ID,
    )
    [back] = bob.protocol.convert_ids(
        [AlternateId(id=hex_entry.id, format=HEX_ENTRY_ID, mailbox=BOB)],
        destination_format=EWS_ID,
    )

    assert entry.id != item.id
    assert all(c in "0123456789ABCDEF" for c in hex_entry.id)
    assert back.id == item.id
    assert back.mailbox == BOB


def test_append_to_attendees(simulator: RunningSimulator, bob: Any) -> None:
    meeting = CalendarItem(
        account=bob,
        folder=bob.calendar,
        subject="Growing meeting",
        start=at(6, 11, 9),
        end=at(6, 11, 10),
        required_attendees=[Attendee(mailbox=Mailbox(email_address=ANN))],
    )
    meeting.save(send_meeting_invitations="SendToAllAndSaveCopy")
    body = f"""<?xml version="1.0" encoding="utf-8"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"
  xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"
  xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">
  <s:Header><t:RequestServerVersion Version="Exchange2016"/></s:Header>
  <s:Body><m:UpdateItem ConflictResolution="AutoResolve" MessageDisposition="SaveOnly"
      SendMeetingInvitationsOrCancellations="SendToAllAndSaveCopy">
    <m:ItemChanges><t:ItemChange>
      <t:ItemId Id="{meeting.id}" ChangeKey="{meeting.changekey}"/>
      <t:Updates><t:AppendToItemField>
        <t:FieldURI FieldURI="calendar:RequiredAttendees"/>
        <t:CalendarItem><t:RequiredAttendees><t:Attendee><t:Mailbox>
          <t:EmailAddress>{CARA}</t:EmailAddress>
        </t:Mailbox></t:Attendee></t:RequiredAttendees></t:CalendarItem>
      </t:AppendToItemField></t:Updates>
    </t:ItemChange></m:ItemChanges>
  </m:UpdateItem></s:Body>
</s:Envelope>"""
    token = base64.b64encode(f"{BOB}:{PASSWORDS[BOB]}".encode()).decode()

    response = requests.post(
        simulator.urls["ews"],
        data=body.encode(),
        headers={"Authorization": f"Basic {token}", "Content-Type": "text/xml; charset=utf-8"},
        timeout=10,
    )

    assert response.status_code == 200
    root = etree.fromstring(response.content)
    assert (
        root.findtext(
            ".//{http://schemas.microsoft.com/exchange/services/2006/messages}ResponseCode"
        )
        == "NoError"
    )
    assert root.find(f".//{T}ItemId").get("Id") == meeting.id
    fetched = bob.calendar.get(id=meeting.id)
    assert [a.mailbox.email_address for a in fetched.required_attendees] == [ANN, CARA]
    [cara_copy] = simulator.store.find_by_uid(CARA, fetched.uid)
    assert cara_copy.subject == "Growing meeting"
