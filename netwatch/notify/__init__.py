"""Notifications: alerts told to people (desktop, webhook, command), rate-limited and digested."""
