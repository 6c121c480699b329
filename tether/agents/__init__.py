"""Built-in agents. Importing this package registers them."""

from tether.agents import batch as batch
