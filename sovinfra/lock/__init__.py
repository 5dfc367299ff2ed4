"""The site lock: what every host of an inventory runs, pinned, and the judgement of hosts against it."""
