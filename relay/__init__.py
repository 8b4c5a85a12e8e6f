"""The relay: listens, routes, builds and sends (docs/design.md §4-§7)."""
