"""The baseline: per-user notifications as the Channels tutorials build them, nothing stored.

A socket joins its user's group; whoever has something to say (an HTTP view, a script)
calls `group_send` to that group itself. No outbox, no worker, no database: what the
channel layer drops is gone. Run beside the product in every benchmark, on the same
machine and load generator, so each result is a ratio to this.
"""
