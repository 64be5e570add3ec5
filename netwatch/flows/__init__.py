"""Flows (pure): the flow table and the join of flows to the processes that own them."""
