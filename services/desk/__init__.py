"""The agent desk: conversations opened and joined from recorded contacts, notes and files."""
