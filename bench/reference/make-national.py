#!/usr/bin/env python3
"""Synthetic national-size reference files for the load benchmark.

Writes, into the directory given (default: bench/reference/out):

  onspd.csv      ROWS rows (default 2 700 000, the size of the ONS Postcode
                 Directory) under the real ONSPD header (the 53 columns of
                 events/reference/onspd-sample.csv), every value the width
                 of a real one; about a third terminated, 85% in England.
  sub-icb.csv    106 sub-ICB locations (England has 106) in the ONS
                 lookup's layout, SICBL22CD,SICBL22CDH,SICBL22NM,ObjectId.
  epraccur.csv   12 000 practices in the 27-column epraccur.csv layout.

The values are made up (deterministic: the same arguments give the same
files). They only need to have the real shape and size, since what is
measured is reading, translating and writing.

usage: make-national.py [DIRECTORY] [ROWS]
"""

import os
import random
import sys

HEADER = (
    "pcd,pcd2,pcds,dointr,doterm,oscty,ced,oslaua,osward,parish,usertype,"
    "oseast1m,osnrth1m,osgrdind,oshlthau,nhser,ctry,rgn,streg,pcon,eer,teclec,"
    "ttwa,pct,itl,statsward,oa01,casward,npark,lsoa01,msoa01,ur01ind,oac01,"
    "oa11,lsoa11,msoa11,wz11,sicbl,bua11,buasd11,ru11ind,oac11,lat,long,lep1,"
    "lep2,pfa,imd,calncv,icb,oa21,lsoa21,msoa21"
)
COLUMNS = HEADER.split(",")
SUB_ICB_LOCATIONS = 106
PRACTICES = 12_000
# Letters a postcode area may start with, and inward-code letters.
AREA_LETTERS = "ABCDEFGHJKLMNOPRSTUWYZ"
INWARD_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"
COUNTRIES = [
    ("E92000001", 0.85),
    ("W92000004", 0.05),
    ("S92000003", 0.07),
    ("N92000002", 0.028),
    ("L93000001", 0.001),
    ("M83000003", 0.001),
]


def postcodes():
    """Unique postcodes in the AA9 9AA / AA99 9AA shapes, in order."""
    for first in AREA_LETTERS:
        for second in AREA_LETTERS:
            for district in range(1, 100):
                outward = f"{first}{second}{district}"
                for sector in range(10):
                    for a in INWARD_LETTERS:
                        for b in INWARD_LETTERS:
                            yield outward, f"{sector}{a}{b}"


def ods(random_):
    return f"{random_.randint(0, 99):02d}{random_.choice('ABCDEFGHJKLMNPQRTVWXY')}"


def main():
    directory = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "out")
    rows = int(sys.argv[2]) if len(sys.argv) > 2 else 2_700_000
    os.makedirs(directory, exist_ok=True)
    random_ = random.Random(20261125)

    sub_icbs = []
    seen = set()
    while len(sub_icbs) < SUB_ICB_LOCATIONS:
        code = ods(random_)
        if code not in seen:
            seen.add(code)
            sub_icbs.append((f"E38{len(sub_icbs) + 1:06d}", code))
    with open(os.path.join(directory, "sub-icb.csv"), "w", newline="") as out:
        out.write("SICBL22CD,SICBL22CDH,SICBL22NM,ObjectId\r\n")
        for number, (ons, code) in enumerate(sub_icbs, 1):
            out.write(f"{ons},{code},NHS Synthetic ICB - {code},{number}\r\n")

    with open(os.path.join(directory, "epraccur.csv"), "w", newline="") as out:
        for number in range(PRACTICES):
            fields = [""] * 27
            fields[0] = f"{AREA_LETTERS[number % 22]}{number:05d}"
            fields[1] = f"SYNTHETIC PRACTICE {number}"
            fields[2], fields[3] = "Y63", "QWO"
            fields[4] = f"{number} HIGH STREET"
            fields[9] = "LS17 7DF"
            fields[10] = "19740401"
            fields[12] = "C" if number % 10 == 0 else "A"
            fields[13] = "B"
            fields[14] = sub_icbs[number % SUB_ICB_LOCATIONS][1]
            fields[15] = "20220701"
            fields[25] = "4"
            out.write(",".join(f'"{field}"' for field in fields) + "\r\n")

    thresholds = []
    total = 0.0
    for code, share in COUNTRIES:
        total += share
        thresholds.append((total, code))
    other = {
        "W92000004": ("W06000015", "W11000029"),
        "S92000003": ("S12000036", "S03000043"),
        "N92000002": ("N09000003", "ZC010"),
        "L93000001": ("L99999999", "L99999999"),
        "M83000003": ("M99999999", "M99999999"),
    }
    index = {name: i for i, name in enumerate(COLUMNS)}
    template = ['"E99999999"'] * len(COLUMNS)
    for name, value in [("usertype", "0"), ("osgrdind", "1"), ("imd", "15000"),
                        ("ru11ind", '"C1"'), ("oac11", '"1A1"')]:
        template[index[name]] = value
    with open(os.path.join(directory, "onspd.csv"), "w", newline="") as out:
        out.write(HEADER + "\r\n")
        lines = []
        for row, (outward, inward) in zip(range(rows), postcodes()):
            draw = random_.random()
            country = next(code for limit, code in thresholds if draw < limit or limit == total)
            if country == "E92000001":
                local_authority = f"E0{random_.randint(6, 9)}{random_.randint(0, 999999):06d}"
                sub_icb = sub_icbs[random_.randrange(SUB_ICB_LOCATIONS)][0]
            else:
                local_authority, sub_icb = other[country]
            fields = list(template)
            pcd = f"{outward:<4}{inward}"
            fields[index["pcd"]] = f'"{pcd}"'
            fields[index["pcd2"]] = f'"{outward:<5}{inward}"'
            fields[index["pcds"]] = f'"{outward} {inward}"'
            fields[index["dointr"]] = f'"{random_.randint(1980, 2024)}{random_.randint(1, 12):02d}"'
            terminated = random_.random() < 0.33
            fields[index["doterm"]] = (
                f'"{random_.randint(1981, 2025)}{random_.randint(1, 12):02d}"' if terminated else '""'
            )
            fields[index["oslaua"]] = f'"{local_authority}"'
            fields[index["ctry"]] = f'"{country}"'
            fields[index["sicbl"]] = f'"{sub_icb}"'
            fields[index["oseast1m"]] = str(random_.randint(100000, 650000))
            fields[index["osnrth1m"]] = str(random_.randint(10000, 1200000))
            fields[index["lat"]] = f"{random_.uniform(49.9, 60.8):.6f}"
            fields[index["long"]] = f"{random_.uniform(-8.6, 1.8):.6f}"
            lines.append(",".join(fields))
            if len(lines) == 10_000:
                out.write("\r\n".join(lines) + "\r\n")
                lines.clear()
        if lines:
            out.write("\r\n".join(lines) + "\r\n")


if __name__ == "__main__":
    main()
