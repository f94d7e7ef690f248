"""The organization administrator's API (connections to Exchange, staff mailboxes) as a
service: :mod:`service`. Its route shapes and bodies are in ``shared.http``."""

from shared.admin.service import AdminApi, org_admin_key_reference
from shared.http.contract import ADMIN_KEY_HEADER

__all__ = ["ADMIN_KEY_HEADER", "AdminApi", "org_admin_key_reference"]
