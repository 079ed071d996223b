import { describeScenarios, type Scenario } from './helpers/send-scenarios.js';

/**
 * fstests' tests/btrfs send tests of file data, holes, prealloc, clones, compression, xattrs and inodes
 * left with no link, their shell with `$SCRATCH_MNT/` dropped (sizes reduced where the test writes more
 * than the case needs, noted). The image is mounted without compression: the compressed cases set the
 * compression property of their files, as a compress mount option would. Harness:
 * test/helpers/send-scenarios.ts.
 */
const SCENARIOS: Scenario[] = [
  { name: 'btrfs/016 a hole punched in a file (4 MiB, fstests 10)', steps: ['head -c 4M /dev/urandom > foo', "xfs_io -c 'fpunch 1m 1m' foo"] },
  {
    name: 'btrfs/025 prealloc past EOF, written, the file cut inside it (clones of unaligned ranges)',
    steps: ["xfs_io -f -c 'truncate 819200' foo; btrfs fi sync .; xfs_io -c 'falloc -k 819200 667648' foo; btrfs fi sync .; xfs_io -c 'pwrite 1482752 2978' foo >/dev/null", "xfs_io -c 'truncate 883305' foo"],
  },
  {
    name: 'btrfs/034 prealloc and writes every 8 KiB (100 of fstests 940), the file cut (hole detection)',
    steps: [`xfs_io -f -c 'truncate 104857600' foo; a=(); for ((i = 0; i < 100; i++)); do o=$((32768 + i * 8192)); a+=(-c "falloc -k $o $((o + 8192))" -c "pwrite -S 0xf0 $o 4096"); done; xfs_io "\${a[@]}" foo >/dev/null`,
      "xfs_io -c 'truncate 431111' foo"],
  },
  {
    name: 'btrfs/038 compressed extents (lzo) at a data offset, cloned from a clone source',
    steps: ["touch foo; btrfs property set foo compression lzo; xfs_io -c 'truncate 118811' -c 'pwrite -S 0x0d -b 39987 92267 39987' foo >/dev/null",
      "xfs_io -c 'pwrite -S 0x3e -b 80000 200000 80000' foo >/dev/null; btrfs fi sync .; xfs_io -c 'pwrite -S 0xdc -b 10000 250000 10000' -c 'pwrite -S 0xff -b 10000 300000 10000' foo >/dev/null", ':'],
    sends: [{ sub: '038.1' }, { sub: '038.2' }, { sub: '038.3', parent: '038.1', clones: ['038.2'] }],
  },
  {
    name: 'btrfs/046 writes into a 16 MiB prealloc extent (fstests 256 MiB, offsets /16), then 10 bytes more',
    steps: ["xfs_io -f -c 'falloc -k 0 16M' foo", `xfs_io \
-c "pwrite -S 0x01 -b 9216 1011888 9216" -c "pwrite -S 0x02 -b 1121 12420006 1121" -c "pwrite -S 0x05 -b 9216 6742964 9216" -c "pwrite -S 0x06 -b 9216 14095012 9216" \
-c "pwrite -S 0x07 -b 67584 6383643 67584" -c "pwrite -S 0x08 -b 7000 5931092 7000" -c "pwrite -S 0x09 -b 113664 15317700 113664" -c "pwrite -S 0x10 -b 123 1121111 123" \
-c "pwrite -S 0x11 -b 39936 14348331 39936" -c "pwrite -S 0x12 -b 67584 10924513 67584" -c "pwrite -S 0x13 -b 9216 15578325 9216" -c "pwrite -S 0x16 -b 67584 9377880 67584" \
-c "pwrite -S 0x17 -b 39936 7390377 39936" -c "pwrite -S 0x18 -b 67584 13497840 67584" -c "pwrite -S 0x19 -b 33792 6068545 33792" -c "pwrite -S 0x20 -b 125952 10393787 125952" \
-c "pwrite -S 0x21 -b 123 67434 123" -c "pwrite -S 0x25 -b 9216 13252780 9216" -c "pwrite -S 0x26 -b 7000 16564821 7000" -c "pwrite -S 0x27 -b 42757 13495167 42757" \
-c "pwrite -S 0x28 -b 7000 4366588 7000" -c "pwrite -S 0x29 -b 67584 4246809 67584" -c "pwrite -S 0x30 -b 39936 16685438 39936" -c "pwrite -S 0x31 -b 1121 1223903 1121" \
-c "pwrite -S 0x32 -b 17408 16106890 17408" -c "pwrite -S 0x33 -b 39936 243469 39936" -c "pwrite -S 0x34 -b 125952 752865 125952" -c "pwrite -S 0x35 -b 17408 1197273 17408" \
-c "pwrite -S 0x36 -b 39936 3135004 39936" -c "pwrite -S 0x37 -b 113664 596862 113664" -c "pwrite -S 0x38 -b 105472 5899469 105472" -c "pwrite -S 0x39 -b 23552 8977053 23552" \
-c "pwrite -S 0x40 -b 39936 15080240 39936" -c "pwrite -S 0x41 -b 113664 12496100 113664" -c "pwrite -S 0x42 -b 67584 4211255 67584" -c "pwrite -S 0x43 -b 67584 1674570 67584" \
-c "pwrite -S 0x44 -b 39936 901369 39936" -c "pwrite -S 0x45 -b 123 15818587 123" -c "pwrite -S 0x46 -b 1121 8014589 1121" -c "pwrite -S 0x47 -b 105472 5723622 105472" \
 foo >/dev/null`, "xfs_io -c 'pwrite -S 0xff -b 10 1011888 10' foo >/dev/null"],
  },
  {
    name: 'btrfs/048 a new file in a directory with the compression property (btrfs.compression xattr)',
    steps: ['mkdir -p testdir/subdir1; touch testdir/file1; btrfs property set testdir/file1 compression lzo; btrfs property set testdir/subdir1 compression lzo; touch testdir/subdir1/foobar',
      'touch testdir/subdir1/foobar2; btrfs property set testdir/file1 compression zstd'],
  },
  {
    name: 'btrfs/053 xattrs of 6000, 6666 and 5555 bytes',
    steps: ["echo 'hello world' > foobar; setfattr -n user.xattr_name_1 -v $(perl -e 'print \"A\" x 6000') foobar",
      "setfattr -n user.xattr_name_1 -v $(perl -e 'print \"Z\" x 6666') foobar; setfattr -n user.xattr_name_2 -v $(perl -e 'print \"U\" x 5555') foobar"],
  },
  {
    name: 'btrfs/094 a block of a compressed extent with a data offset cloned into a new file',
    steps: ["touch foo; btrfs property set foo compression zlib; xfs_io -c 'pwrite -S 0xaa 64k 128k' -c fsync -c 'pwrite -S 0xbb 64k 112k' -c fsync -c 'pwrite -S 0xcc 180k 12k' -c fsync foo >/dev/null",
      "touch bar; xfs_io -c 'reflink foo 176k 176k 4k' bar >/dev/null"],
  },
  { name: 'btrfs/097 a file\'s extent cloned into lower offsets of itself', steps: ["xfs_io -f -c 'pwrite -S 0xaa 128k 64k' foo >/dev/null", "xfs_io -c 'reflink foo 144k 0 16k' -c 'reflink foo 176k 16k 16k' foo >/dev/null"] },
  {
    name: 'btrfs/105 a file replaced by another of the same name and inode number (in a writable snapshot)',
    steps: ["mkdir -p foo; xfs_io -f -c 'pwrite -S 0xaa 0 64K' foo/bar >/dev/null",
      `btrfs subvolume snapshot . "$M/$N.rw" >/dev/null; rm -f "$M/$N.rw/foo/bar"; xfs_io -f -c 'pwrite -S 0xbb 0 96K' "$M/$N.rw/foo/bar" >/dev/null
btrfs subvolume snapshot -r "$M/$N.rw" "$M/$N.2" >/dev/null`],
  },
  {
    name: 'btrfs/108 reflinked files, one then written and punched (full send)',
    steps: ["xfs_io -f -c 'pwrite -S 0xaa 0K 100K' foo >/dev/null; cp --reflink=always foo bar; xfs_io -c 'pwrite -S 0xbb 50K 10K' -c 'pwrite -S 0xcc 90K 10K' -c 'fpunch 70K 10k' foo >/dev/null"],
  },
  {
    name: 'btrfs/109 reflinked files with compressed extents (full send)',
    steps: ["touch foo; btrfs property set foo compression zlib; xfs_io -c 'pwrite -S 0xaa 0K 100K' -c fsync -c 'pwrite -S 0xbb 0K 40K' -c 'pwrite -S 0xcc 100K 100K' foo >/dev/null; cp --reflink=always foo bar"],
  },
  {
    name: 'btrfs/110 the parent a received subvolume (its received uuid in the stream)',
    steps: ["xfs_io -f -c 'pwrite -S 0xaa 0K 32K' foo >/dev/null",
      `mkdir -p "$M/recv"; btrfs send -q "$M/$N.1" | btrfs receive -q "$M/recv"; btrfs subvolume snapshot "$M/recv/$N.1" "$M/$N.rw" >/dev/null
xfs_io -c 'pwrite -S 0xbb 4K 4K' "$M/$N.rw/foo" >/dev/null; btrfs subvolume snapshot -r "$M/$N.rw" "$M/$N.2" >/dev/null`],
    sends: [{ sub: '110.1' }, { sub: '110.2', parent: 'recv/110.1' }],
  },
  {
    name: 'btrfs/111 received snapshots sent again, full and incremental',
    steps: ["xfs_io -f -c 'pwrite -S 0xaa 0K 64K' foo >/dev/null; mkdir d", "xfs_io -c 'pwrite -S 0xbb 32K 8K' foo >/dev/null; mv foo d/; touch bar",
      'mkdir -p "$M/recv2"; btrfs send -q "$M/$N.1" | btrfs receive -q "$M/recv2"; btrfs send -q -p "$M/$N.1" "$M/$N.2" | btrfs receive -q "$M/recv2"'],
    sends: [{ sub: 'recv2/111.1', dest: 'again' }, { sub: 'recv2/111.2', parent: 'recv2/111.1', dest: 'again' }],
  },
  {
    name: 'btrfs/117 a clone from a clone source into a file three directories down, 1000 files beside it',
    steps: ["mkdir -p a/b/c; xfs_io -f -c 'pwrite -S 0xfd 0 128K' a/b/c/x >/dev/null",
      "for ((i = 1; i <= 1000; i++)); do echo -n > a/b/c/z_$i; done; cp --reflink=always a/b/c/x a/b/c/y; xfs_io -c 'pwrite -S 0xab 32K 16K' a/b/c/y >/dev/null", ':'],
    // and 117.3 in full with -c 117.2: the extents it shares with it through tree blocks are cloned
    sends: [{ sub: '117.1' }, { sub: '117.2' }, { sub: '117.3', parent: '117.1', clones: ['117.2'] }, { sub: '117.3', clones: ['117.2'], dest: 'full-c' }],
  },
  {
    name: 'btrfs/130 one extent reflinked 256 times into one file (full send: backrefs)',
    steps: ["a=(-c 'pwrite -S 0xcd 0 128K'); for ((i = 1; i < 256; i++)); do a+=(-c \"reflink foobar 0 $((i * 131072)) 131072\"); done; xfs_io -f \"${a[@]}\" foobar >/dev/null"],
  },
  {
    name: 'btrfs/033 a file of 1024 extents (fstests 10240) shared by 10 snapshots (fstests 51; full send)',
    steps: ['a=(); for ((i = 1024; i >= 1; i--)); do a+=(-c "pwrite $((i * 4096)) 4096"); done; xfs_io -f -d "${a[@]}" foo >/dev/null; for i in $(seq 0 9); do btrfs subvolume snapshot -r . "$M/$N.s$i" >/dev/null; done'],
  },
  {
    name: 'btrfs/137 holes kept by full and incremental sends',
    steps: ["xfs_io -f -c 'pwrite -S 0xaa -b 64k 0 64K' foo >/dev/null; xfs_io -f -c 'pwrite -S 0xaa -b 64k 0 64K' -c 'pwrite -S 0xbb -b 64k 1088K 64K' bar >/dev/null",
      "xfs_io -c 'pwrite -S 0xbb -b 64k 1088K 64K' foo >/dev/null; xfs_io -c 'pwrite -S 0xcc -b 64k 1088K 64K' bar >/dev/null"],
  },
  { name: 'btrfs/149 an uncompressed extent at offset 0 shared (reflinked) further in', steps: ["xfs_io -f -d -c 'pwrite -S 0xab 0 4096' foobar >/dev/null", "xfs_io -c 'reflink foobar 0 8192 4096' foobar >/dev/null"] },
  {
    name: 'btrfs/168 files unlinked while open: the sent subvolume and a snapshot hold inodes with no link',
    steps: [
      `xfs_io -f -c 'pwrite -S 0xf1 0 64K' foo >/dev/null; xfs_io -f -c 'pwrite -S 0x7b 0 90K' bar >/dev/null; xfs_io -f -c 'pwrite -S 0xea 0 256K' baz >/dev/null
sync; hold 'sleep 600 73<bar'; unlink bar; btrfs property set . ro true`,
      `btrfs subvolume snapshot "$M/$N.1" "$M/$N.rw" >/dev/null; xfs_io -c 'pwrite -S 0x19 4K 8K' "$M/$N.rw/baz" >/dev/null; btrfs subvolume snapshot -r "$M/$N.rw" "$M/$N.2" >/dev/null
btrfs property set "$M/$N.2" ro false; hold "sleep 600 73<$M/$N.2/foo"; unlink "$M/$N.2/foo"; btrfs property set "$M/$N.2" ro true`,
    ],
    sends: [{ sub: '168' }, { sub: '168.1' }, { sub: '168.2', parent: '168.1' }],
  },
  {
    name: 'btrfs/278 inodes with no links in both snapshots: deleted, changed, new',
    steps: [
      'touch deleted.file; mkdir deleted.dir; touch changed_subcase1.file changed_subcase2.file; mkdir changed_subcase1.dir changed_subcase2.dir; touch changed_subcase1.dir/foo changed_subcase2.dir/foo',
      `unlink deleted.file; rmdir deleted.dir; touch new.file; mkdir new.dir; snap 2
cd "$M/$N.1"; btrfs property set . ro false; hold 'sleep 600 71<deleted.file 72<deleted.dir 73<changed_subcase1.file 74<changed_subcase1.dir'
unlink deleted.file; rmdir deleted.dir; rm changed_subcase1.file changed_subcase1.dir/foo; rmdir changed_subcase1.dir; btrfs property set . ro true
cd "$M/$N.2"; btrfs property set . ro false; hold 'sleep 600 81<changed_subcase1.file 82<changed_subcase1.dir 83<changed_subcase2.file 84<changed_subcase2.dir 85<new.file 86<new.dir'
rm changed_subcase1.file changed_subcase1.dir/foo changed_subcase2.file changed_subcase2.dir/foo new.file; rmdir changed_subcase1.dir changed_subcase2.dir new.dir
btrfs property set . ro true`,
    ],
  },
  { name: 'btrfs/169 a hole punched in a prealloc extent past EOF', steps: ["xfs_io -f -c 'falloc -k 0 4M' -c 'pwrite -S 0xea 0 1M' foobar >/dev/null", "xfs_io -c 'fpunch 1M 2M' foobar"] },
  { name: 'btrfs/188 no-holes: prealloc past EOF, the data before it punched away', steps: ["xfs_io -f -c 'pwrite -S 0xab 0 500K' -c 'falloc -k 1200K 800K' foobar >/dev/null", "xfs_io -c 'fpunch 0 500K' foobar"] },
  {
    name: 'btrfs/189 no clone of an unaligned EOF block into the middle of a file',
    steps: ["for f in b1:foo c7:bar 4d:baz e2:zoo; do xfs_io -f -c \"pwrite -S 0x${f%:*} 0 2M\" ${f#*:} >/dev/null; done",
      "xfs_io -c 'reflink bar 1600K 640K 128K' bar >/dev/null; xfs_io -c 'reflink bar 1600K 0 128K' zoo >/dev/null; xfs_io -c 'truncate 710K' bar"],
  },
  {
    name: 'btrfs/191 deduplication into the same file in the parent and the sent snapshot',
    steps: ["xfs_io -f -s -c 'pwrite -S 0xb8 -b 64K 0 512K' foo >/dev/null; xfs_io -c 'pwrite -S 0xb8 512K 512K' foo >/dev/null",
      `xfs_io -f -c 'pwrite -S 0xb8 0 1M' bar >/dev/null; snap 2; xfs_io -r -c "dedupe bar 0 0 512K" "$M/$N.1/foo" >/dev/null
xfs_io -r -c "dedupe bar 512K 512K 512K" "$M/$N.2/foo" >/dev/null`],
  },
  {
    name: 'btrfs/200 extents shared within one file, full and incremental',
    steps: ["xfs_io -f -c 'pwrite -S 0xb1 -b 128K 0 128K' -c 'reflink foo 0 128K 128K' foo >/dev/null; xfs_io -f -c 'pwrite -S 0xc7 -b 128K 0 128K' bar >/dev/null",
      "xfs_io -c 'reflink bar 0 128K 128K' bar >/dev/null"],
  },
  {
    name: 'btrfs/203 a file shares extents with itself across a hole, its size grown',
    steps: ["xfs_io -f -c 'pwrite -S 0xf1 0 64K' foobar >/dev/null",
      "xfs_io -c 'pwrite -S 0xab 512K 64K' -c 'pwrite -S 0xcd 576K 64K' -c 'pwrite -S 0xef 640K 64K' -c 'pwrite -S 0x64 704K 64K' -c 'pwrite -S 0x73 768K 64K' -c 'reflink foobar 448K 192K 192K' foobar >/dev/null"],
  },
  {
    name: 'btrfs/214 file capabilities over three generations, a chgrp (which drops them) in between',
    steps: ["touch foo1 foo.bar foo.bax foo.baz; setcap 'cap_sys_ptrace+ep cap_sys_nice+ep' foo.bar",
      "setcap 'cap_sys_ptrace+ep cap_sys_nice+ep' foo1; chgrp 100 foo.bar; setcap 'cap_sys_ptrace+ep cap_sys_nice+ep' foo.bar",
      "chgrp 0 foo.bar; setcap 'cap_sys_time+ep cap_syslog+ep' foo.bar; chgrp 100 foo1"],
  },
  {
    name: 'btrfs/229 parts of one extent cloned into its own file at several offsets, most of it overwritten',
    steps: ["xfs_io -f -c 'pwrite -S 0xab 0 128K' -c 'pwrite -S 0xcd 128K 128K' -c 'pwrite -S 0xef 256K 256K' -c 'pwrite -S 0x1a 512K 512K' foobar >/dev/null",
      "xfs_io -c 'reflink foobar 64K 1M 960K' -c 'reflink foobar 0K 512K 256K' -c 'reflink foobar 512K 128K 256K' -c 'pwrite -S 0x73 384K 640K' foobar >/dev/null"],
  },
  {
    name: 'btrfs/235 a capability set on one file only, not on the files made after it',
    steps: ['touch foo bar baz; setcap cap_net_raw=p foo', 'touch foo2 bar2 baz2; setcap cap_net_raw=p bar; setcap cap_sys_nice=ep foo2'],
  },
  {
    name: 'btrfs/281 a compressed extent partly shared by a file of unaligned size (full, --compressed-data)',
    steps: ["touch foo bar; btrfs property set foo compression zlib; btrfs property set bar compression zlib; xfs_io -c 'pwrite -S 0xab 0 65K' foo >/dev/null; xfs_io -c 'pwrite -S 0xcd 0 128K' bar >/dev/null; xfs_io -c 'reflink bar 0 0 64K' foo >/dev/null"],
    opts: { compressedData: true },
  },
  {
    name: 'btrfs/283 shared extents that some files refer to whole and others in part (full: clone choice)',
    steps: ["xfs_io -f -c 'pwrite -S 0xab -b 128K 0 128K' foo >/dev/null; cp --reflink=always foo bar; cp --reflink=always foo baz; xfs_io -c 'pwrite -S 0xcd -b 64K 64K 64K' foo >/dev/null"],
  },
  { name: 'btrfs/303 a sparse 1 GiB file gets an extent between the last one and EOF (no zero writes)', steps: ["xfs_io -f -c 'truncate 1G' foobar", "xfs_io -c 'pwrite -S 0xab -b 64K 0 64K' -c 'pwrite -S 0xcd -b 64K 512M 64K' foobar >/dev/null"] },
  {
    name: 'btrfs/312 compressed extents written over in part (--compressed-data)',
    steps: ["touch foo; btrfs property set foo compression zlib; xfs_io -c 'pwrite -S 0xab 111K 30K' foo >/dev/null", "xfs_io -c 'pwrite -S 0xcd 120K 8K' -c 'pwrite -S 0xef 160K 4K' foo >/dev/null"],
    opts: { compressedData: true },
  },
  { name: 'btrfs/319 a shared extent that ends at an unaligned i_size is cloned (full)', steps: ["xfs_io -f -d -c 'pwrite -S 0xab -b 1048581 0 1048581' foo >/dev/null; cp --reflink=always foo bar"] },
  {
    name: 'btrfs/322 a file cut to 0 then made a clone of a file ending unaligned',
    steps: ["xfs_io -f -d -c 'pwrite -S 0xab -b 128K 0 128K' -c 'pwrite -S 0xcd -b 131077 128K 131077' foo >/dev/null; xfs_io -f -c 'pwrite -S 0xef 0 1M' bar >/dev/null",
      "xfs_io -c 'truncate 0' -c 'reflink foo' bar >/dev/null"],
  },
];

describeScenarios('fstests send scenarios: data, holes, clones, xattrs, unlinked inodes', SCENARIOS);
