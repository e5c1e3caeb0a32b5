"""Reading inputs: the competition layouts, single images, person-level splits."""
