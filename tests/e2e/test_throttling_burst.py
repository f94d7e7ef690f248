"""A burst of bookings while Exchange throttles: nothing wedges, everything lands once.

Twelve EWS bookings across three mailboxes arrive while Exchange answers every request with
``ErrorServerBusy``. The worker re-queues each with the server's back-off; meanwhile a Graph
booking must still be applied (a throttled EWS server may not starve the other protocol or
storage), and once the fault clears every EWS booking lands exactly once.
"""

from __future__ import annotations

import time

from sim.store import Fault
from tests.e2e.conftest import STAFF, World
from tests.e2e.test_booking_to_exchange import only_live, snapshot, unique
from tests.waiting import wait_until

BURST = 12


def test_a_throttled_burst_on_several_mailboxes_lands_once_the_fault_clears(world: World) -> None:
    ews = list(STAFF["ews"].items())
    for _, address in ews:
        world.sim.store.add_fault(
            Fault(
                kind="server_busy", operation="*", mailbox=address, remaining=None, back_off_ms=300
            )
        )
    booked: list[tuple[str, str, str]] = []
    try:
        for n in range(BURST):
            organizer, mailbox = ews[n % len(ews)]
            secondary = ews[(n + 1) % len(ews)][0]
            appointment_id, numbered, day = unique("Burst")
            title = f"[{numbered}]"  # "#1" must not match "#10" when calendars are searched
            response = world.put_appointment(
                appointment_id, snapshot(1, organizer, [secondary], title=title, day=day)
            )
            assert response.status_code == 202, response.text
            booked.append((appointment_id, title, mailbox))

        # Every booking was tried and throttled at least once (recorded where status can show it).
        def all_throttled() -> bool:
            for appointment_id, _, _ in booked:
                mapping = world.mapping(appointment_id)
                problem = world.problem(appointment_id)
                if (mapping is None or "RetryAfter" not in (mapping.last_error or "")) and (
                    problem is None or problem.throttled_since is None
                ):
                    return False
            return True

        wait_until(all_throttled, timeout=60, what="every booking to be throttled once")

        # While EWS is throttled, the other protocol still works.
        (dan, dan_mailbox), (eve, _), _ = STAFF["graph"].items()
        graph_id, graph_title, graph_day = unique("Graph during EWS throttling")
        response = world.put_appointment(
            graph_id, snapshot(1, dan, [eve], title=graph_title, day=graph_day)
        )
        assert response.status_code == 202, response.text
        world.applied(graph_id, 1, timeout=60)
        assert only_live(world, dan_mailbox, graph_title)
    finally:
        for _, address in ews:
            world.sim.store.clear_faults(address)

    started = time.monotonic()
    for appointment_id, _, _ in booked:
        world.applied(appointment_id, 1, timeout=max(5.0, 90 - (time.monotonic() - started)))
    for _, title, mailbox in booked:
        assert only_live(world, mailbox, title)
    # Throttling is over: no booking still shows it.
    for appointment_id, _, _ in booked:
        mapping = world.mapping(appointment_id)
        assert mapping is not None
        assert mapping.last_error is None
        assert world.problem(appointment_id) is None
