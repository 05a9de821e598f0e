"""The web console served at `/`: its files (plain HTML, CSS and one script, no build step
and nothing from elsewhere), the client configuration it shows next to a key, and the
status history it charts. Its routes are the `console` dialect (mlapi.dialects.console)."""
