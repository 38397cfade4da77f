"""tegrastats lines of each Jetson generation, as shared/reference/telemetry-formats.md gives them.

Nano, Xavier NX and Orin Nano lines are the reference's full lines. For AGX Orin,
AGX Xavier and TX2 the reference gives only the power tail: it is appended to a
head of the same generation's format (the head carries no power fields). The
JetPack 7 three-value line is built from the reference's description
(`cur/avg/peak`), not copied from a board.
"""

from __future__ import annotations

NANO_JP4 = (
    "RAM 2461/3964MB (lfb 2x4MB) SWAP 362/1982MB (cached 6MB) CPU [52%@1479,38%@1479,43%@1479,33%@1479] "
    "EMC_FREQ 0% GR3D_FREQ 10% PLL@24C CPU@26C PMIC@100C GPU@24C AO@29C thermal@25.25C "
    "POM_5V_IN 3410/3410 POM_5V_GPU 493/465 POM_5V_CPU 1314/1340"
)

XAVIER_NX_JP5 = (
    "RAM 2690/6854MB (lfb 6x1MB) SWAP 479/3427MB (cached 3MB) CPU [3%@1904,7%@1906,1%@1905,0%@1907,off,off] "
    "EMC_FREQ 0%@1600 GR3D_FREQ 0%@[510] VIC_FREQ 601 APE 150 AUX@39C CPU@39.5C AO@37.5C GPU@37.5C PMIC@50C "
    "VDD_IN 5079mW/5079mW VDD_CPU_GPU_CV 696mW/696mW VDD_SOC 1104mW/1104mW"
)

ORIN_NANO_JP6 = (
    "11-30-2025 13:26:01 RAM 2461/7620MB (lfb 3x2MB) SWAP 1243/3810MB (cached 5MB) "
    "CPU [19%@729,14%@729,22%@729,8%@729,15%@729,17%@729] EMC_FREQ 4%@2133 GR3D_FREQ 0%@[305] "
    "NVDEC off NVJPG off NVJPG1 off VIC off OFA off APE 200 cpu@46.531C soc2@47.312C soc0@46.593C "
    "gpu@48.218C tj@48.843C soc1@48.843C VDD_IN 5704mW/5704mW VDD_CPU_GPU_CV 831mW/831mW VDD_SOC 1624mW/1624mW"
)

_JP5_HEAD = (
    "11-30-2025 13:26:01 RAM 4212/30536MB (lfb 6947x4MB) SWAP 0/15268MB (cached 0MB) "
    "CPU [2%@729,1%@729,0%@729,0%@729,0%@729,0%@729,0%@729,0%@729] EMC_FREQ 0%@2133 GR3D_FREQ 0%@[0,0] "
    "VIC off APE 174 cpu@44.281C soc2@41.968C soc0@42.625C gpu@41.75C tj@44.281C soc1@41.75C "
)
_JP4_HEAD = (
    "RAM 1838/15692MB (lfb 2950x4MB) SWAP 0/7846MB (cached 0MB) CPU [1%@1190,0%@1190,0%@1190,0%@1190] "
    "EMC_FREQ 0% GR3D_FREQ 0% AO@35C GPU@35C Tdiode@38.75C PMIC@50C AUX@35C CPU@36C thermal@35.55C "
)

AGX_ORIN_JP5 = _JP5_HEAD + (
    "VDD_GPU_SOC 2390mW/2390mW VDD_CPU_CV 796mW/796mW VIN_SYS_5V0 3522mW/3522mW NC 0mW/0mW "
    "VDDQ_VDD2_1V8AO 301mW/301mW NC 0mW/0mW"
)
AGX_XAVIER = _JP4_HEAD + "GPU 1155/1155 CPU 385/385 SOC 2504/2503 CV 0/0 VDDRQ 192/192 SYS5V 2692/2692"
TX2 = _JP4_HEAD + "VDD_IN 1038/1134 VDD_CPU 153/153 VDD_GPU 153/153 VDD_SOC 384/384 VDD_WIFI 38/124 VDD_DDR 192/192"
AGX_ORIN_JP7 = _JP5_HEAD + (
    "VDD_GPU_SOC 2390mW/2380mW/2950mW VDD_CPU_CV 796mW/790mW/1020mW VIN_SYS_5V0 3522mW/3510mW/3600mW "
    "NC 0mW/0mW/0mW VDDQ_VDD2_1V8AO 301mW/300mW/320mW NC 0mW/0mW/0mW"
)

# line, expected watts, expected rail words of the meter's method
EXPECTED = {
    "nano_jp4": (NANO_JP4, 3.410, "POM_5V_IN (board input)"),
    "xavier_nx_jp5": (XAVIER_NX_JP5, 5.079, "VDD_IN (board input)"),
    "orin_nano_jp6": (ORIN_NANO_JP6, 5.704, "VDD_IN (board input)"),
    "agx_orin_jp5": (AGX_ORIN_JP5, 7.009,
                     "sum of VDD_GPU_SOC+VDD_CPU_CV+VIN_SYS_5V0+VDDQ_VDD2_1V8AO (module rails; carrier board "
                     "not included)"),
    "agx_xavier": (AGX_XAVIER, 6.928, "sum of GPU+CPU+SOC+CV+VDDRQ+SYS5V (module rails; carrier board not included)"),
    "tx2": (TX2, 1.038, "VDD_IN (board input)"),
    "agx_orin_jp7": (AGX_ORIN_JP7, 7.009,
                     "sum of VDD_GPU_SOC+VDD_CPU_CV+VIN_SYS_5V0+VDDQ_VDD2_1V8AO (module rails; carrier board "
                     "not included)"),
}
