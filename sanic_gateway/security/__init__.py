"""Who is calling and what they may do. The funnel asks a SecurityPolicy; protocols never do."""

from .policy import ANONYMOUS, OpenPolicy, SecurityPolicy, User

__all__ = ["ANONYMOUS", "OpenPolicy", "SecurityPolicy", "User"]
