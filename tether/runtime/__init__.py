"""Agents, the context they run in, and the engine that runs them on DBOS.

agent.py     Agent specs and the registry (`@agent`)
context.py   TaskContext: what an agent sees (emit, steps, delegation); the Host protocol
engine.py    Runtime: creating, running, cancelling and recovering tasks
children.py  sub-agents, run inside their parent's workflow
waiting.py   waiting for a task to end
outcomes.py  recording a task's outcome
workers.py   workers on a shared database: queues, heartbeats, takeover, the Fence
durable.py   every call to DBOS
types.py     types these share (Outcome, the Fence protocol)
"""
