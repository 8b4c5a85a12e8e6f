"""The relay: listens, routes, builds and sends (DESIGN.md §4-§7)."""
