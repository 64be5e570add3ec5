"""The Textual dashboard: renders snapshots from an injected feed and never samples."""
