"""The daemon's small web endpoint: signed action links from notifications (acknowledge, coached,
not useful), confirmed with a button so that opening a link never changes anything."""

from usagewatch.web.links import LinkError, action_links, verify
from usagewatch.web.server import Running, start_server

__all__ = ["LinkError", "Running", "action_links", "start_server", "verify"]
