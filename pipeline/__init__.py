"""winnow's pipeline package: configuration, shard I/O, the Ray runner, the CLI.

Everything that knows about more than one stage lives here; stages know only the shard contract
(`pipeline.shards`) and filters know nothing of ours.
"""

__version__ = "0.1.0"
