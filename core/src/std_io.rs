//! `std::io::Read` and `std::io::Write` for weft's flow types, for the type
//! and for a shared reference to it: weft flows work through `&self`, so
//! `&File` reads and writes as `File` does (like std's `&File` and
//! `&TcpStream`). Errors convert with `From<Error> for io::Error`, which
//! keeps the weft error inside for `Error::from` to take back out.

/// Implements `std::io::Read` for each type and a reference to it, through
/// its [`Source`](crate::flow::Source) impl.
macro_rules! std_read {
    ($($t:ty),+ $(,)?) => {$(
        impl std::io::Read for $t {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                Ok($crate::flow::Source::read(self, buf)?)
            }
            fn read_vectored(
                &mut self,
                bufs: &mut [std::io::IoSliceMut<'_>],
            ) -> std::io::Result<usize> {
                Ok($crate::flow::Source::read_vectored(self, bufs)?)
            }
        }

        impl std::io::Read for &$t {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                Ok($crate::flow::Source::read(*self, buf)?)
            }
            fn read_vectored(
                &mut self,
                bufs: &mut [std::io::IoSliceMut<'_>],
            ) -> std::io::Result<usize> {
                Ok($crate::flow::Source::read_vectored(*self, bufs)?)
            }
        }
    )+};
}

/// Implements `std::io::Write` for each type and a reference to it, through
/// its [`Sink`](crate::flow::Sink) impl. `flush` does nothing: a sink has
/// no buffer of its own (wrap it in a `BufWriter` for one).
macro_rules! std_write {
    ($($t:ty),+ $(,)?) => {$(
        impl std::io::Write for $t {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                Ok($crate::flow::Sink::write(self, buf)?)
            }
            fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
                Ok($crate::flow::Sink::write_vectored(self, bufs)?)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }

        impl std::io::Write for &$t {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                Ok($crate::flow::Sink::write(*self, buf)?)
            }
            fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
                Ok($crate::flow::Sink::write_vectored(*self, bufs)?)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
    )+};
}

pub(crate) use {std_read, std_write};
