"""A FUSE filesystem for tests: ROOT's files seen at MOUNTPOINT, as a FUSE mount offers them.

Usage: passthrough_fuse.py ROOT MOUNTPOINT [--fail-reads] [--fail-writes] [--fail-data-writes]

Through libfuse 2 (fusepy) it has what many FUSE filesystems (sshfs, s3fs, rclone) lack:
no O_TMPFILE (EOPNOTSUPP), no renameat2 flags such as RENAME_NOREPLACE (EINVAL) and, here,
no hard links (EPERM). With --fail-reads every read of file data fails with EIO, and with
--fail-writes every write, as a network filesystem's do when its server goes away; with
--fail-data-writes only writes of bytes that are not all zero fail (a file's space, reserved by
writing zeros, is had; its data, written back later, is not). Runs in the foreground until
unmounted.
"""
import errno
import os
import sys

from fusepy import FUSE, FuseOSError, Operations


class Passthrough(Operations):
    def __init__(self, root, options):
        self.root = root
        self.fail_reads = '--fail-reads' in options
        self.fail_writes = '--fail-writes' in options
        self.fail_data_writes = '--fail-data-writes' in options

    def _path(self, path):
        return os.path.join(self.root, path.lstrip('/'))

    def __call__(self, op, *args):
        try:
            return super().__call__(op, *args)
        except OSError as e:  # an os call's error is the filesystem's answer
            raise FuseOSError(e.errno) from None

    def access(self, path, mode):
        if not os.access(self._path(path), mode):
            raise FuseOSError(errno.EACCES)

    def getattr(self, path, fh=None):
        st = os.lstat(self._path(path))
        return {k: getattr(st, k) for k in ('st_atime', 'st_ctime', 'st_gid', 'st_mode', 'st_mtime',
                                            'st_nlink', 'st_size', 'st_uid', 'st_ino')}

    def readdir(self, path, fh):
        return ['.', '..'] + os.listdir(self._path(path))

    def statfs(self, path):
        s = os.statvfs(self._path(path))
        return {k: getattr(s, k) for k in ('f_bavail', 'f_bfree', 'f_blocks', 'f_bsize', 'f_favail',
                                           'f_ffree', 'f_files', 'f_flag', 'f_frsize', 'f_namemax')}

    def mkdir(self, path, mode):
        os.mkdir(self._path(path), mode)

    def rmdir(self, path):
        os.rmdir(self._path(path))

    def unlink(self, path):
        os.unlink(self._path(path))

    def rename(self, old, new):
        os.rename(self._path(old), self._path(new))

    def link(self, target, source):
        raise FuseOSError(errno.EPERM)

    def chmod(self, path, mode):
        os.chmod(self._path(path), mode)

    def chown(self, path, uid, gid):
        os.chown(self._path(path), uid, gid)

    def truncate(self, path, length, fh=None):
        os.truncate(self._path(path), length)

    def utimens(self, path, times=None):
        os.utime(self._path(path), times)

    def open(self, path, flags):
        # Read-write whatever was asked: the kernel reads pages for a writable mapping through
        # any handle of the file.
        return os.open(self._path(path), (flags & ~(os.O_WRONLY | os.O_ACCMODE)) | os.O_RDWR
                       if (flags & os.O_ACCMODE) != os.O_RDONLY else flags)

    def create(self, path, mode, fi=None):
        return os.open(self._path(path), os.O_RDWR | os.O_CREAT | os.O_EXCL, mode)

    def read(self, path, size, offset, fh):
        if self.fail_reads:
            raise FuseOSError(errno.EIO)
        return os.pread(fh, size, offset)

    def write(self, path, data, offset, fh):
        if self.fail_writes or (self.fail_data_writes and data.count(0) != len(data)):
            raise FuseOSError(errno.EIO)
        return os.pwrite(fh, data, offset)

    def flush(self, path, fh):
        pass

    def release(self, path, fh):
        os.close(fh)

    def fsync(self, path, datasync, fh):
        os.fsync(fh)


if __name__ == '__main__':
    FUSE(Passthrough(sys.argv[1], sys.argv[3:]), sys.argv[2], foreground=True, nothreads=True)
