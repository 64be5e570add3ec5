"""Drill-down screens: alert, flow, process, check, help."""
