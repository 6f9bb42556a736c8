"""The task engine: normalise → route → submit, and the poller that carries tasks to the end."""
