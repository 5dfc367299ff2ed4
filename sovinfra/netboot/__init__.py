"""Network boot of servers from the site: reading what the netboot service saw."""
