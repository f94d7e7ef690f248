"""calbridge: two-way sync between a booking platform and Microsoft Exchange calendars.

The application package; the README's architecture section maps its rooms: ``engine`` (pure
sync decisions and the domain rules), ``apply`` (the booking → Exchange worker's service),
``exchange`` (the calendar port and its adapters), ``store`` and ``queues`` (Azure Storage),
``http`` (the HTTP layer and route registry), ``booking`` and ``admin`` (the services behind the
routes), ``models``, ``timezones``, ``config``, and ``bootstrap``, the one place where real
clients are built.
"""
