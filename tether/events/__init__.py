"""The per-session event log, what a reader is served from it, and live delivery.

log.py         EventLog: the one writer of events and task rows (group commit, seqs
               gapless in commit order, one caller's failure its own)
append.py      Append and Chain: what a caller hands the log
plan.py        what one batch writes: seqs allocated under each session's row, retention
statements.py  the text of every statement a commit runs, from db/schema.py's tables
queries.py     the log's queries on a connection: pages by seq, a task's events, keys
frames.py      a stream's backlog read straight into SSE frames, one read for the streams
               of a session that ask for the same page together
reader.py      what a reader is served, scoped to the session's owner: the snapshot,
               pages with no gap, and `Gone` (410) when the log no longer holds a cursor
hub.py         MemoryHub: wake-ups in this process (the embedded backend)
pg_notify.py   the Postgres backend: NOTIFY as a commit hook, LISTEN, the remote feed
stream.py      the SSE stream of one session: snapshot, catch-up, live events, heartbeats
"""
