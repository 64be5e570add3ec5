"""netwatch: which process talks to whom, where that is, and whether it is VPN traffic.

This module holds the version only, so importing the package stays cheap.
"""

__version__ = "0.1.0"
