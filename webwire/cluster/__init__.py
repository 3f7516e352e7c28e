"""
Reaching connections beyond one: every connection of a session key, of a
topic, or of the server, on this process (L{LocalCluster}, every server's
default) or on every server process that shares a Redis
(L{webwire.cluster.redis.RedisCluster}, which needs txredisapi).

Application code holds the cluster of its server as C{server.cluster} or,
in a handler, C{connection.cluster}; see L{webwire.interfaces.ICluster}.
"""

from webwire.cluster.local import LocalCluster, checkTopic

__all__ = ["LocalCluster", "checkTopic"]
