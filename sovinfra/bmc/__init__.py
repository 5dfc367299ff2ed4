"""Servers' BMCs: who to reach and how (targets), and the Redfish calls (redfish)."""
