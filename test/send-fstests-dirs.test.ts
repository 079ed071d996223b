import { CYCLE_MOUNT, describeScenarios, type Scenario } from './helpers/send-scenarios.js';

/**
 * fstests' tests/btrfs send tests of renames, orphans, rmdir and hard links (the kernel's send broke on
 * each before), their shell with `$SCRATCH_MNT/` dropped: the first step makes the parent snapshot's tree,
 * the second changes it (the commands and names as in the fstests test, so the inode numbers come out the
 * same). btrfs-ts sends them, the kernel's receive must give each snapshot (test/helpers/send-scenarios.ts).
 * Those with a test of their own in send-incremental.test.ts are not here (docs/performance.md lists them).
 */
const SCENARIOS: Scenario[] = [
  {
    name: 'btrfs/019 a directory removed and made again with the same entries (new inodes, same names)',
    steps: ['mkdir test; touch test/baz; touch test/blah; mkdir test/foo; touch test/foo/bar',
      'rm -rf test; mkdir test; touch test/baz; mkdir test/foo; touch test/foo/bar; touch test/blah'],
  },
  {
    name: 'btrfs/030 parents and children swapped over several levels, files renamed and linked on the way',
    steps: [
      `mkdir -p a/b/c; echo hello > a/b/c/file.txt; mkdir a/b/c/d; mkdir a/b/c2; mkdir a/b/www; echo hey > a/b/foobar.txt
mkdir -p a/b/c3/x/y; mkdir -p a/b/foo1/foo2; echo hey > a/b/foo1/foo2/f.txt; mkdir a/b/foo3
mkdir -p a/b/bar1/bar2/bar3/bar4; echo ola > a/b/bar1/bar2/bar3/bar4/hello.txt`,
      `echo ' world' >> a/b/c/file.txt; mv a/b/c/d a/b/c2/d2; mv a/b/c a/b/c2/d2/cc; mv a/b/c3/x/y a/b/c2/y2; mv a/b/c3/x a/b/c2/y2/x2
mv a/b/c3 a/b/c2/y2/x2/Z; mv a/b/www a/b/c2/y2/x2/WWW; mv a/b/foobar.txt a/b/c2/y2/x2/qwerty.txt
ln a/b/c2/d2/cc/file.txt a/b/c2/y2/x2/Z/file_link.txt; mv a/b/c2/d2/cc/file.txt a/b/c2/y2/x2; mv a/b/foo3 a/b/foo1/foo33
mv a/b/foo1/foo2 a/b/foo1/foo33/foo22; mv a/b/foo1/foo33/foo22/f.txt a/b/foo1/foo33/foo22/fff.txt
echo ' hello' >> a/b/bar1/bar2/bar3/bar4/hello.txt; mv a/b/bar1/bar2/bar3/bar4/hello.txt a/b/bar1/bar2/bar3/bar4/hello2.txt
mv a/b/bar1/bar2/bar3/bar4 a/b/k44; mv a/b/bar1/bar2/bar3 a/b/k44; mv a/b/bar1/bar2 a/b/k44/bar3; mv a/b/bar1 a/b/k44/bar3/bar2/k11`,
    ],
  },
  {
    name: 'btrfs/039 a child and its parent (of a higher inode number) both renamed in place',
    steps: ['mkdir -p a/b; mkdir d; mkdir a/b/c; mv d a/b/c; mkdir e; mkdir -p a/b/f/g; mv e a/b/f/g',
      'mv a/b/c a/b/x; mv a/b/x/d a/b/x/y; mv a/b/f a/b/w; mv a/b/w/g/e a/b/w/g/z'],
  },
  {
    name: 'btrfs/040 rmdir of a directory whose last child has several links in it and one outside',
    steps: ["mkdir -p a/b/c; echo 'hello world' > a/b/c/hel.txt; echo 'ola mundo' > a/b/c/foo.txt; ln a/b/c/foo.txt a/b/c/bar.txt; ln a/b/c/foo.txt a/b/baz.txt",
      'rm -f a/b/c/foo.txt; rm -f a/b/c/bar.txt; rm -f a/b/c/hel.txt; rmdir a/b/c'],
  },
  {
    name: 'btrfs/043 rmdir of an orphanized directory only once its children have moved out',
    steps: ["mkdir -p a/b; mkdir 0; mkdir 1; mkdir a/b/c; mv 0 a/b/c; mv 1 a/b/c; echo 'ola mundo' > a/b/c/foo.txt; mkdir a/b/c/x; mkdir a/b/c/x2; mkdir a/b/y; mkdir a/b/z; mkdir -p a/b/d1/d2/d3; mkdir a/b/d4",
      'rm -f a/b/c/foo.txt; mv a/b/y a/b/YY; mv a/b/z a; mv a/b/c/x a/b/YY; mv a/b/c/0 a/b/YY/00; mv a/b/c/x2 a/z/X_2; mv a/b/c/1 a/z/X_2; rmdir a/b/c; mv a/b/d4 a/d44; mv a/b/d1/d2 a/d44; rmdir a/b/d1'],
  },
  {
    name: 'btrfs/044 utimes, chown and chmod paths of a directory whose move is delayed (umask 0, the file renamed too)',
    steps: ["umask 0; mkdir -p a/b/c/d/e; mkdir a/b/c/f; echo 'ola ' > a/b/c/d/e/file.txt; chmod 0777 a/b/c/d/e",
      "echo 'mundo' >> a/b/c/d/e/file.txt; mv a/b/c/d/e/file.txt a/b/c/d/e/file2.txt; mv a/b/c/f a/b/f2; mv a/b/c/d/e a/b/f2/e2; mv a/b/c a/b/c2; mv a/b/c2/d a/b/c2/d2; chmod 0700 a/b/f2/e2"],
  },
  {
    name: 'btrfs/045 path building through pending moves: six subtrees moved under renamed lower- and higher-numbered parents',
    steps: [
      `mkdir -p a/b; mkdir a/c; mkdir a/b/d; touch a/file1; touch a/b/file2; mv a/file1 a/b/d/file3; ln a/b/d/file3 a/b/file4; mkdir a/b/f
mv a/b a/c/b2; touch a/c/b2/d/file5; mkdir -p a/x1/x2; mkdir a/Z; mkdir -p a/x1/x2/x3/x4/x5; mkdir -p _a/_b/_c/_d; mkdir _a/_b/_c/_d/_e
mkdir _a/_b/_c/_d/_f; mv _a/_b/_c/_d/_e _a/_b/_c/_d/_f/_E2; mkdir _a/_b/_c/_g; mv _a/_b/_c/_d _a/_b/_D2; mkdir -p za/zb/zc/zd; mkdir za/zb/ze
mv za/zb/zc za/zb/ze/zCC; mkdir za/zb/ze/zCC/zd/zf; mkdir za/zg; mkdir -p y_a/y_b; mkdir -p y_a/y_c/y_d; mkdir y_a/y_b/y_e; mkdir y_a/y_c/y_d/y_f
mv y_a/y_b y_a/y_c/y_d/y_2b; mkdir y_a/y_x; mkdir y_a/y_y; mkdir -p w_a/w_b; mkdir -p w_a/w_c/w_d; mkdir w_a/w_b/w_e; mkdir w_a/w_c/w_d/w_f
mv w_a/w_b w_a/w_c/w_d/w_2b; mkdir -p xa/xb; mkdir xa/xc; mv xa/xb xa/xc/xb2; mkdir xa/xe; mkdir -p %a/%b; mkdir %a/%c; mkdir %a/%b/%d; mkdir %a/%c/%e`,
      `ln a/c/b2/file4 a/c/b2/f/file6; mv a/c/b2/d/file5 a/c/file7; touch a/c/b2/d/file8; touch a/c/b2/file9; ln a/c/b2/file9 a/c/b2/file10
mv a/c/b2/f a/f2; mv a/c a/c2; mv a/c2/b2 a/f2/b3; mv a/c2 a/f2/b3/c3; touch a/f2/b3/c3/file11; mv a a2; mv a2/x1/x2/x3 a2/Z/X33
mv a2/x1/x2 a2/Z/X33/x4/x5/X22; mkdir _a/_o; mv _a/_b/_c/_g _a/_b/_D2/_f/_G2; mv _a/_b/_D2 _a/_b/_dd; mv _a/_b/_c _a/_C2; mv _a/_b/_dd/_f _a/_o/_FF
mv _a/_b _a/_o/_FF/_E2/_BB; mkdir za/zg/zh; mv za/zb/ze za/zg/zh/zEE; mv za/zg/zh/zEE/zCC/zd za/zg/zh/zEE/zDD; mv za/zg/zh/zEE/zDD/zf za/zg/zh/zEE/zDD/zFF
mv y_a/y_x y_a/y_y; mv y_a/y_c/y_d/y_2b/y_e y_a/y_c/y_d/y_2b/y_2e; mv y_a/y_c/y_d y_a/y_y/y_x/y_2d; mv y_a/y_c y_a/y_y/y_x/y_2d/y_2b/y_2c
mv w_a/w_c/w_d/w_2b/w_e w_a/w_c/w_d/w_2b/w_2e; mkdir w_a/w_h; mv w_a/w_c/w_d w_a/w_h/w_2d; mv w_a/w_c w_a/w_h/w_2d/w_2b/w_2c; mv xa/xc/xb2 xa/xe/xb3
mkdir xa/xe/xb3/xf; mkdir xa/xh; mv xa/xc xa/xe/xb3/xf/xc2; mv xa/xe xa/xh/xe2; echo hello > %a/foo; mkdir %a/%b/%d/%f; mkdir %a/%b/%g
mv %a/%c/%e %a/%b/%g/%e2; mv %a/%c %a/%b/%d/%f/%c2; mv %a/%b/%d/%f %a/%b/%g/%e2/%f2; mv %a/foo %a/%b/%g/%e2/%f2`,
    ],
  },
  {
    name: 'btrfs/077 a directory renamed into a new directory that takes its old name',
    steps: ['mkdir -p merlin/RC/OSD/Source; mkdir -p fdm/RCz/OSDz/Sourcez; mkdir -p Z/Z2',
      'mkdir OSD; mv merlin/RC/OSD OSD/OSD-Plane_788; mv OSD merlin/RC; mkdir OSDz; mv Z/Z2 OSDz/xz2; mv Z OSDz/xz2/xz; mv fdm/RCz/OSDz OSDz/xz2/xz/OSD-Plane_788z; mv OSDz fdm/RCz'],
  },
  {
    name: "btrfs/083 a directory takes another's old name, that one's rename due before a third's",
    steps: ['mkdir a; mkdir b; mkdir c; touch a/file; mkdir d; mkdir e; touch e/file2; mkdir f', 'mv c x; mv a x/y; mv b a; mv f f2; mv e f2/e2; mv d e'],
  },
  {
    name: 'btrfs/084 the roots of two subtrees of the same path (p1/p2) swapped',
    steps: ['mkdir -p data/n1/n2/p1/p2; mkdir data/n4; mkdir -p data/p1/p2',
      'mv data/p1/p2 data; mv data/n1/n2/p1/p2 data/p1; mv data/p2 data/n1/n2/p1; mv data/n1/n2 data/p1; mv data/p1 data/n4; mv data/n4/p1/n2/p1 data'],
  },
  {
    name: 'btrfs/087 many subtrees moved between parents, names kept, parent and child inverted (the -ENOMEM path loop)',
    steps: [
      `mkdir data; mkdir data/n1; mkdir data/n1/n2; mkdir data/n4; mkdir data/n1/n2/p1; mkdir data/n1/n2/p1/p2; mkdir data/t6; mkdir data/t7
mkdir -p data/t5/t7; mkdir data/t2; mkdir data/t4; mkdir -p data/t1/t3; mkdir data/p1; mv data/t1 data/p1; mkdir -p data/p1/p2
mv data/t4 data/p1/p2/t1; mv data/t5 data/n4/t5; mv data/n1/n2/p1/p2 data/n4/t5/p2; mv data/t7 data/n4/t5/p2/t7; mv data/t2 data/n4/t1
mv data/p1 data/n4/t5/p2/p1; mv data/n1/n2 data/n4/t5/p2/p1/p2/n2; mv data/n4/t5/p2/p1/p2/t1 data/n4/t5/p2/p1/p2/n2/t1
mv data/n4/t5/t7 data/n4/t5/p2/p1/p2/n2/t1/t7; mv data/n4/t5/p2/p1/t1/t3 data/n4/t5/p2/p1/p2/n2/t1/t3
mv data/n4/t5/p2/p1/p2/n2/p1 data/n4/t5/p2/p1/p2/n2/t1/t7/p1; mv data/t6 data/n4/t5/p2/p1/p2/n2/t1/t3/t5
mv data/n4/t5/p2/p1/t1 data/n4/t5/p2/p1/p2/n2/t1/t3/t1; mv data/n1 data/n4/t5/p2/p1/p2/n2/t1/t7/p1/n1`,
      `mv data/n4/t1 data/n4/t5/p2/p1/p2/n2/t1/t7/p1/t1; mv data/n4/t5/p2/p1/p2/n2/t1 data/n4/; mv data/n4/t5/p2/p1/p2/n2 data/n4/t1/n2
mv data/n4/t1/t7/p1 data/n4/t1/n2/p1; mv data/n4/t1/t3/t1 data/n4/t1/n2/t1; mv data/n4/t1/t3 data/n4/t1/n2/t1/t3
mv data/n4/t5/p2/p1/p2 data/n4/t1/n2/p1/p2; mv data/n4/t1/t7 data/n4/t1/n2/p1/t7; mv data/n4/t5/p2/p1 data/n4/t1/n2/p1/p2/p1
mv data/n4/t1/n2/t1/t3/t5 data/n4/t1/n2/p1/p2/t5; mv data/n4/t5 data/n4/t1/n2/p1/p2/p1/t5
mv data/n4/t1/n2/p1/p2/p1/t5/p2 data/n4/t1/n2/p1/p2/p1/p2; mv data/n4/t1/n2/p1/p2/p1/p2/t7 data/n4/t1/t7`,
    ],
  },
  {
    name: 'btrfs/092 entries of one name for different inodes in both snapshots, an orphanized directory whose rename must wait',
    steps: [
      `mkdir -p data/n1/n2; mkdir data/n4; mkdir -p data/t6/t7; mkdir data/t5; mkdir data/t7; mkdir data/n4/t2; mkdir data/t4; mkdir data/t3
mv data/t7 data/n4/t2; mv data/t4 data/n4/t2/t7; mv data/t5 data/n4/t2/t7/t4; mv data/t6 data/n4/t2/t7/t4/t5; mv data/n1/n2 data/n4/t2/t7/t4/t5/t6
mv data/n1 data/n4/t2/t7/t4/t5/t6; mv data/n4/t2/t7/t4/t5/t6/t7 data/n4/t2/t7/t4/t5/t6/n2; mv data/t3 data/n4/t2/t7/t4/t5/t6/n2/t7`,
      `mv data/n4/t2/t7/t4/t5/t6/n1 data/n4; mv data/n4/t2 data/n4/n1; mv data/n4/n1/t2/t7/t4/t5/t6/n2 data/n4/n1/t2; mv data/n4/n1/t2/n2/t7/t3 data/n4/n1/t2
mv data/n4/n1/t2/t7/t4/t5/t6 data/n4/n1/t2; mv data/n4/n1/t2/t7/t4 data/n4/n1/t2/t6; mv data/n4/n1/t2/t7 data/n4/n1/t2/t3; mv data/n4/n1/t2/n2/t7 data/n4/n1/t2`,
    ],
  },
  {
    name: 'btrfs/127 four cases of directories switching the inodes their entries point to',
    steps: [
      `mkdir -p case_1/d/p1; mkdir case_1/p1; mkdir -p case_2/a; mkdir case_2/d; mkdir case_2/e; mkdir case_2/f; mkdir case_2/ance; mkdir case_2/d/ance
mkdir case_2/a/c; mv case_2/e case_2/d/ance; mv case_2/f case_2/d/ance; mv case_2/ance case_2/d/ance; mkdir -p case_3/d; mkdir case_3/a
mkdir case_3/waiting_dir; mkdir -p case_3/pre/ance; mkdir case_3/d/ance; mkdir case_3/a/c; mv case_3/waiting_dir case_3/d/ance; mkdir -p case_4/tmp
mkdir case_4/below_ance; mkdir -p case_4/pre/wait_dir; mkdir case_4/desc; mkdir case_4/ance; mv case_4/below_ance case_4/ance; mkdir case_4/other_dir`,
      `mv case_1/d/p1 case_1/p1; mv case_1/p1 case_1/d; mv case_2/a/c case_2; mv case_2/d/ance case_2/c; mv case_2/c/ance/ance case_2/d; mv case_2/c/ance/f case_2
mv case_2/c/ance/e case_2/f; mv case_3/d/ance case_3/a; mv case_3/a/c case_3; mv case_3/a/ance/waiting_dir case_3/c; mv case_3/pre/ance case_3/d
mv case_3/pre case_3/c/waiting_dir; mv case_4/other_dir case_4/tmp; mv case_4/ance/below_ance case_4/tmp/other_dir; mv case_4/pre/wait_dir case_4/tmp/other_dir
mv case_4/pre case_4/tmp/other_dir/below_ance; mv case_4/desc case_4/tmp/other_dir/wait_dir; mv case_4/ance case_4/tmp/other_dir/wait_dir/desc`,
    ],
  },
  {
    name: 'btrfs/128 a directory emptied by moves and removed, one of its children now the parent of another (the leak)',
    steps: ['mkdir a; mkdir tmp; mkdir del; mv tmp del; mkdir a/c; mkdir del/x; mkdir del/y', 'mv a/c .; mv del/x a; mv del/y a; mv del/tmp c; rmdir del'],
  },
  {
    name: 'btrfs/129 rmdir not sent before the directory is empty',
    steps: ['mkdir a; mkdir tmp; mkdir del; mv tmp del; mkdir a/c; mkdir del/x', 'mv a/c .; mv del/x a; mv del/tmp c; rmdir del'],
  },
  { name: "btrfs/144 a file renamed and linked again, another takes its old name", steps: ['touch f1; touch f2; touch f3', 'mv f3 f4; ln f2 f5; mv f2 f3; mv f1 f2'] },
  {
    name: 'btrfs/145 a file takes the name of a renamed directory that was its ancestor',
    steps: ['mkdir dir1; mkdir dir1/dir2; touch dir1/dir2/file1; touch dir1/dir2/file2; touch dir1/dir2/file3; mkdir dir1/dir3; mv dir1/dir2/file2 dir1/dir3/file22; mkdir dir1/dir3/dir4',
      'mv dir1/dir2/file3 dir1/dir3/dir4/file33; mv dir1/dir2/file1 dir1/dir3/dir4/file11; mv dir1/dir3 dir1/file3; mv dir1/file3/file22 dir1/dir3'],
  },
  {
    name: "btrfs/147 a directory moved, a file renamed into its old name and linked into it",
    steps: ['mkdir dir1; mkdir dir1/dir2; mkdir dir1/dir2/dir3; mkdir dir5; touch dir1/dir2/dir3/file1; mkdir dir1/dir2/dir3/dir4',
      'mkdir dir1/dir6; mv dir5 dir1/dir2/dir3/dir4/dir55; ln dir1/dir2/dir3/file1 dir1/dir2/dir3/dir4/file11; mv dir1/dir2/dir3/dir4 dir1/dir6/dir44; mv dir1/dir2/dir3/file1 dir1/dir2/dir3/dir4'],
  },
  {
    name: "btrfs/155 links of a multi-link file renamed, one into another inode's old path",
    steps: ['mkdir a; touch a/f1; mkdir -p a/b/c; ln a/f1 a/b/c/f1l1; touch a/b/f2; mkdir d; mv a/b/c/f1l1 d/f1l1_2; ln a/b/f2 a/f2l1; ln a/b/f2 d/f2l2; mv a/f1 d/f1_2',
      'mv d a/b/d2; mv a/f2l1 d; mkdir a/f2l1; ln a/b/d2/f1_2 a/b/f1l2; mv a/b a/f2l1/b2; mv a/f2l1/b2/d2 a/f2l1/b2/c/d3; mv a/f2l1/b2/c/d3/f2l2 a/f2l1/b2/c/d3/f2l2_2'],
  },
  {
    name: 'btrfs/178 ancestors of many directories become their descendants (the infinite loop)',
    steps: [
      `mkdir 257; mkdir 258; mv 257 258/257; mkdir 259; mkdir 260; mkdir 261; mkdir 262; mkdir 263; mkdir 264; mv 258 264/258; mkdir 265; mkdir 266
mv 259 266/259; mv 260 266/260; mv 264 266/264; mv 265 266/265; mkdir 266/260/267; mkdir 266/268; mkdir 266/269; mv 262 266/269/262; mkdir 266/270
mkdir 271; mv 266 271/266; mkdir 271/266/272; mv 263 271/266/272/263; mkdir 273; mkdir 271/266/274; mv 273 271/266/274/273; mkdir 271/266/272/275; mv 271 261/271`,
      `mv 261/271/266/272/275 275; mv 261/271/266/274 275/274; mv 261/271/266/269/262 275/274/273/262; mv 261/271/266/269 275/274/273/262/269
mv 261/271/266/264/258/257 261/271/266/272; mv 261/271/266/264/258 275/274/273/262/269/258; mv 261/271 275/274/273/262/269/258/271
B=275/274/273/262/269/258/271; mv $B/266/268 $B/268; mv $B/266/260/267 $B/268/267; mv $B/266/270 $B/268/267/270; mv $B/266/265 $B/266/259/265
mv $B/266/259 $B/268/267/270/259; mv $B/266/272/263 $B/266/264/263; mv $B/266/272 $B/268/267/270/272; mv $B/266/260 $B/268/267/270/272/257/260
mv $B/266/264 $B/268/267/270/272/257/264; mv 261 $B/268/267/270/272/257/264/263/261; mv $B/266 $B/268/267/270/272/257/264/263/261/266`,
    ],
  },
  {
    name: 'btrfs/221 a file and a directory swap names and places, the file having had an entry in that directory',
    steps: ['touch a; touch b; mkdir testdir; mv a testdir/a', 'mv testdir/a a2; touch testdir/a; mv b b2; ln a2 b; mv testdir testdir_2; mv a2 testdir'],
  },
  {
    name: 'btrfs/222 two links of one inode swap names and places with two directories, one the parent of the other',
    steps: ['touch f1; touch f2; mkdir d1; mkdir d1/d2', 'ln f2 d1/f2_link; mv f1 d1/d2/f1; mv d1 tmp; mv f2 d1; mv tmp f2; mv f2/d2 tmp; mv f2/f2_link f2/d2; mv tmp f2/f2_link'],
  },
  {
    name: "btrfs/241 a multi-link file takes a directory's old name and another link the old path of a file in it",
    steps: ['touch file1; touch file2; touch file3; mkdir A; ln file3 A/hard_link', 'mv file1 A/file1; mv A/hard_link tmp; mv file2 A/hard_link; mv A B; ln B/hard_link A'],
  },
  // inode numbers used again with a new generation (fstests makes a new filesystem for 133 and 135 and
  // sends from an unrelated parent, which btrfs-ts refuses: here a mount cycle hands the numbers out again)
  { name: 'btrfs/133 an inode replaced by one of the same number, another generation, both children of the root', steps: ['mkdir a1; mkdir a2', 'rmdir a1 a2', `${CYCLE_MOUNT}touch a2`] },
  {
    name: 'btrfs/134 a directory moved to a new parent after its old parent went and a new inode got that number',
    steps: ['mkdir dir257; mkdir dir258; mkdir dir259; mv dir257 dir258/dir257', 'mv dir258/dir257 dir257; rmdir dir258; rmdir dir259',
      `${CYCLE_MOUNT}touch file258; mkdir new_dir259; mv dir257 new_dir259/dir257`],
    sends: [{ sub: '134.1' }, { sub: '134.3', parent: '134.1' }],
  },
  {
    name: 'btrfs/135 two directories of one number and other generations, an entry of one name for different inodes in each',
    steps: ['touch f; mkdir d1; mkdir d259_old; mv d1 d259_old/d1', 'rm -r f d259_old', `${CYCLE_MOUNT}mkdir d1; mkdir dir258; mkdir dir259; mv d1 dir259/d1`],
    sends: [{ sub: '135.1' }, { sub: '135.3', parent: '135.1' }],
  },
  {
    name: 'btrfs/227 a directory and its files removed, a new file after the mount cycle',
    steps: ['mkdir dir; touch dir/file1; touch dir/file2; touch dir/file3', 'rm -fr dir', `${CYCLE_MOUNT}touch newfile`],
    sends: [{ sub: '227.1' }, { sub: '227.3', parent: '227.1' }],
  },
  // many entries (link counts as in fstests: perl makes them in milliseconds)
  {
    name: 'btrfs/272 2000 links removed, 1000 of them made again (links sent against existing paths)',
    steps: ['touch foo; perl -e \'link "foo", $_ or die for 1..2000\'', 'perl -e \'unlink $_ for 1..2000; link "foo", $_ or die for 1001..2000\''],
  },
  {
    name: 'btrfs/338 directories of 1000 links each (extrefs) removed: one rmdir each',
    steps: ['mkdir a b; touch a/foo; perl -e \'for (1..1000) { link "a/foo", "a/foo.$_" or die; link "a/foo", "b/foo.$_" or die }\'', 'rm -fr a b'],
  },
  {
    name: 'btrfs/050 an inode left with extended references only (2550 links made and removed), then renamed',
    steps: [
      'P=home/john/files/series/qwerty; mkdir -p $P; touch $P/foobar; perl -e \'link "$ARGV[0]/foobar", sprintf("%s/foobar_link_%04d", $ARGV[0], $_) or die for 1..2550\' $P; ln $P/foobar $P/final_foobar_name; rm $P/foobar $P/foobar_link_*',
      'P=home/john/files/series/qwerty; mv $P/final_foobar_name $P/renamed; mv home/john home/jane',
    ],
  },
  {
    name: 'btrfs/051 paths longer than 230 bytes, renamed deep inside',
    steps: [
      "P='fdmanana/.config/google-chrome-mysetup/Default/Pepper_Data/Shockwave_Flash/WritableRoot/#SharedObjects/JSHJ4ZKN/s.wsj.net/[[IMPORT]]/players.edgesuite.net/flash/plugins/osmf/advanced-streaming-plugin/v2.7/osmf1.6/Ak#'; mkdir -p \"$P\"; echo 'hello world' > \"$P/amaiAdvancedStreamingPlugin.txt\"",
      `P='fdmanana/.config/google-chrome-mysetup/Default/Pepper_Data/Shockwave_Flash/WritableRoot/#SharedObjects/JSHJ4ZKN/s.wsj.net/[[IMPORT]]'
mv "$P/players.edgesuite.net" "$P/players"; mv fdmanana/.config fdmanana/config; mkdir "fdmanana/config/${'x'.repeat(200)}"
mv fdmanana/config/google-chrome-mysetup "fdmanana/config/${'x'.repeat(200)}/"`,
    ],
  },
  // subvolumes inside the sent one: send leaves them out (the snapshot shows an empty directory), so the
  // kernel's own stream received is the reference
  {
    name: 'btrfs/054 a directory replaced by a subvolume of its name, a subvolume by a directory',
    steps: ['mkdir testdir; btrfs subvolume create first_subvol >/dev/null', 'rmdir testdir; btrfs subvolume create testdir >/dev/null; btrfs subvolume delete first_subvol >/dev/null; mkdir first_subvol'],
    kernelOracle: true,
  },
  {
    name: 'btrfs/008 a snapshot inside the sent subvolume (the ENOENT of a full send)',
    steps: ['mkdir testdir testdir/1 testdir/2; head -c 16384 /dev/urandom > testdir/aa; head -c 16384 /dev/urandom > testdir/bb; mkdir snapshots; btrfs subvolume snapshot -r . snapshots/backup2 >/dev/null',
      'btrfs subvolume snapshot -r . snapshots/backup3 >/dev/null; mv testdir/aa testdir/1/'],
    kernelOracle: true,
  },
];

describeScenarios('fstests send scenarios: renames, orphans, links', SCENARIOS);
