"""The dashboard's widgets: connections table, alerts pane, status bar, charts."""
