"""Drill-down screens: alert, flow, process, check, history, help."""
