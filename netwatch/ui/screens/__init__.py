"""Drill-down screens: alert, flow, process, help."""
