"""The release this checkout is; `/` shows it so a deploy can be seen to have switched."""

RELEASE = "v1"
