"""
Sample texts of C{/proc} files and GPU tools, as real machines print them.
"""

PROC_STAT_1 = """\
cpu  10132153 290696 3084719 46828483 16683 0 25195 0 0 0
cpu0 1393280 32966 572056 13366730 4524 0 2337 0 0 0
cpu1 1335376 37284 446412 13376138 4098 0 1287 0 0 0
intr 1462898 0 0 0
ctxt 2468745
btime 1700000000
processes 21377
procs_running 2
"""

# cpu0: 100 jiffies pass, 25 busy (user 20, system 5); cpu1: 200 pass, 150 busy
PROC_STAT_2 = """\
cpu  10132323 290696 3084724 46828608 16683 0 25195 0 0 0
cpu0 1393300 32966 572061 13366805 4524 0 2337 0 0 0
cpu1 1335526 37284 446412 13376188 4098 0 1287 0 0 0
intr 1462998 0 0 0
"""

MEMINFO = """\
MemTotal:       16303428 kB
MemFree:         1016540 kB
MemAvailable:    8151712 kB
Buffers:          306316 kB
Cached:          6981256 kB
SwapCached:        10240 kB
SwapTotal:       2097148 kB
SwapFree:        1048572 kB
HugePages_Total:       0
Hugepagesize:       2048 kB
"""

LOADAVG = "0.52 0.58 0.59 2/1034 123456\n"

NET_DEV = """\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 2776770   11307    0    0    0     0          0         0  2776770   11307    0    0    0     0       0          0
  eth0: 1215645    2751    0    0    0     0          0         0  1782404    4324    0    0    0     0       0          0
"""

CPUINFO_X86 = """\
processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz
physical id\t: 0
core id\t\t: 0
cpu cores\t: 2

processor\t: 1
vendor_id\t: GenuineIntel
model name\t: Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz
physical id\t: 0
core id\t\t: 1
cpu cores\t: 2

processor\t: 2
vendor_id\t: GenuineIntel
model name\t: Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz
physical id\t: 0
core id\t\t: 0
cpu cores\t: 2

processor\t: 3
vendor_id\t: GenuineIntel
model name\t: Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz
physical id\t: 0
core id\t\t: 1
cpu cores\t: 2
"""

CPUINFO_ARM = """\
processor\t: 0
BogoMIPS\t: 108.00
CPU implementer\t: 0x41
CPU part\t: 0xd08

processor\t: 1
BogoMIPS\t: 108.00
CPU implementer\t: 0x41
CPU part\t: 0xd08

Hardware\t: BCM2835
Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""

OS_RELEASE = """\
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
ID=debian
# a comment
HOME_URL="https://www.debian.org/"
"""

# nvidia-smi --query-gpu=index,name,uuid,temperature.gpu,temperature.memory,
# utilization.gpu,utilization.memory,memory.used,memory.total,fan.speed,power.draw
# --format=csv,noheader,nounits
NVIDIA_STATS = """\
0, NVIDIA GeForce RTX 4090, GPU-5a4a3c1e-0d6c-4d4c-9b1e-8c5f3e2a1b0c, 45, [N/A], 37, 12, 20480, 24564, 30, 125.37
1, NVIDIA A100-SXM4-80GB, GPU-0f9e8d7c-6b5a-4938-2716-0a1b2c3d4e5f, 38, 41, 0, 0, 4, 81920, [N/A], 61.02
"""

# nvidia-smi --query-gpu=index,name,uuid,memory.total,driver_version,pci.bus_id
NVIDIA_HARDWARE = """\
0, NVIDIA GeForce RTX 4090, GPU-5a4a3c1e-0d6c-4d4c-9b1e-8c5f3e2a1b0c, 24564, 550.54.14, 00000000:01:00.0
"""

ROCM_STATS = """\
{"card0": {"Temperature (Sensor edge) (C)": "45.0", "Temperature (Sensor junction) (C)": "47.0",
 "Temperature (Sensor memory) (C)": "52.0", "Average Graphics Package Power (W)": "35.0",
 "Fan speed (%)": "21", "GPU use (%)": "7", "GPU Memory Allocated (VRAM%)": "31",
 "VRAM Total Memory (B)": "25753026560", "VRAM Total Used Memory (B)": "8053063680",
 "Card Series": "Radeon RX 7900 XTX", "Unique ID": "0x9e3d4c2b1a0f8e7d"},
 "system": {"Driver version": "6.7.0"}}
"""

ROCM_HARDWARE = """\
{"card0": {"Card Series": "Radeon RX 7900 XTX", "VRAM Total Memory (B)": "25753026560",
 "Unique ID": "0x9e3d4c2b1a0f8e7d", "PCI Bus": "0000:03:00.0"},
 "system": {"Driver version": "6.7.0"}}
"""

PROC = {
    "stat": PROC_STAT_1,
    "meminfo": MEMINFO,
    "loadavg": LOADAVG,
    "net/dev": NET_DEV,
}
