"""Sources: the only code that touches the OS (sockets, processes, packets, pcap files)."""
