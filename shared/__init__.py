"""calbridge: two-way sync between a booking platform and Microsoft Exchange calendars.

The application package. ``engine`` holds pure sync decisions; ``exchange`` the calendar port
and its EWS and Graph adapters; ``store`` the Table Storage repositories; ``queues`` the queue
messages; ``booking`` the booking-platform contract; ``config`` settings and secrets;
``bootstrap`` the one place where real clients are built.
"""
