import { ImageError } from '../errors.js';
import { BtrfsImage } from '../image/read/index.js';
import { withImageFile } from '../io/image-read-file.js';

/**
 * `fn` on the image file `real` as its last commit left it, read beside a change open on it (changeImage):
 * for what a change takes from the committed trees (quota rescan's counts, the subvolumes a delete names).
 * An image with a tree log is refused: the writer's open replays the log, which the committed trees do not
 * have. `shown`: the image's name in that error.
 */
export async function readCommitted<T>(real: string, shown: string, fn: (img: BtrfsImage) => Promise<T>): Promise<T> {
  return withImageFile(real, async (src) => {
    const img = await BtrfsImage.open(src);
    if (img.hasLogTree) throw new ImageError('IMAGE_HAS_LOG', `${shown} has a tree log: mount it (or receive into it) once to replay it first`);
    return fn(img);
  });
}
