"""Detection (pure): rules over enriched flows and host facts, producing alerts with evidence."""
