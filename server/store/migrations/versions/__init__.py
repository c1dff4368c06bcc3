"""Schema revisions, oldest first. Append new revisions; never edit an applied one."""
