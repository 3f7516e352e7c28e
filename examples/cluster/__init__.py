"""
The chat of L{examples.chatroom} on two server processes that share one
Redis: a WebWire cluster on one machine, started with one command.

Run it (from the repository root, after ``pip install '.[redis]'``; it
needs C{redis-server}, on C{PATH} or at C{/usr/bin/redis-server}):

    python -m examples.cluster [--ports 8080,8081] [--redis-port PORT]

It starts a redis-server on 127.0.0.1 (on a free port unless
C{--redis-port} says which; persistence off, so it forgets everything when
it stops) and, once Redis is ready, one node per port: a chat server on
127.0.0.1 with its sessions and its cluster in that Redis. Every line the
children write comes out prefixed with the child's name (C{redis},
C{node1}, C{node2}); the runner's own lines start with C{cluster}, e.g.
C{started node1 (pid 1234): ...}, and, once every node serves and hears
the others (long lines cut here):

    cluster | ready: Redis on 127.0.0.1:41234, nodes on ports 8080, 8081
    cluster | Open http://localhost:8080/ and http://localhost:8081/ in ...
    cluster | sign in on each and chat: a message said on one reaches ...

Open both in two browser windows, sign in with a name in each, and chat:
a message said on one node reaches the other. The nodes listen on
127.0.0.1 only, and Redis has no password: this is a demo for one machine.

What the cluster does here
==========================

Each node's server has a L{webwire.cluster.redis.RedisCluster} and a
L{webwire.sessions.redis.RedisSessionManager} on the same Redis (with the
prefixes C{twistd webwire --cluster --sessions redis} gives its chat):

  - B{Messages cross processes}: C{say} broadcasts through the cluster, to
    every chat connection of every node.
  - B{Sign-out crosses processes}: C{logout} closes the session on every
    connection that holds it, on every node: every window of that user
    signs out.
  - B{Sessions are shared}: a session made on one node is restored on the
    other. Browsers keep the page's session key in localStorage, which is
    per origin, and http://localhost:8080 and http://localhost:8081 are two
    origins: reloading a window brings it back signed in on its own node,
    but the other port's page does not know the key. To see a restore
    across nodes, read the key in the console of the 8080 window
    (C{chatClient.session.key}), then, in the console of a window on 8081
    that is not signed in, store it under that page's key and reload:

        localStorage.setItem("ws://localhost:8081/chat",
                             JSON.stringify({session: "<the key>"}))

    It is signed in as the same user, on the other node; sign out there
    and the 8080 window signs out too. Behind a load balancer (one origin)
    this needs no console: a reload may land on any node and stays signed
    in.
  - B{C{presence} and C{who} show each node's own users}: who is online is
    what one process sees, so each window lists the users of its node
    only, while messages come from everyone.

Stopping
========

Ctrl-C (or SIGTERM) stops the nodes first (SIGTERM: each drains, closing
its connections with 1001 and leaving the cluster), then Redis, and exits
with status 0. If a child exits by itself, the runner stops the others and
exits with status 1. Each child runs in a process group of its own, so that
a Ctrl-C reaches the runner only (otherwise Redis would quit while the
nodes still drain).

How a node is run
=================

The runner starts each node as C{python -m examples.cluster node --port P
--redis-url URL} rather than as::

    twistd -n webwire --listen tcp:P --sessions redis --cluster --redis-url URL

which would serve the same chat, because C{node.py} is the part worth
copying: a few dozen lines that give a service of your own a Redis
cluster and Redis sessions (C{examples.chatroom.makeService} with a
cluster). It also serves the chat
only (twistd's default application adds the conformance application), and
logs one line once it serves and is subscribed to the other nodes'
messages, which the runner waits for. C{runner.py} is the supervision:
Twisted's C{spawnProcess} and a C{ProcessProtocol} per child.
"""

NODE_READY = "node ready"
"""Starts the line a node logs once it serves and hears the other nodes."""
