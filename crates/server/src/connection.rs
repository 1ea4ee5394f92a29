//! One client connection: a reading thread and a writing thread.
//!
//! The reading thread reads frames, dispatches them, and queues what each will answer; the
//! writing thread finishes the answers in request order (waiting for acks, long-polling) and
//! writes them. Clients pipeline requests, so a produce's wait for `durable` does not hold up
//! reading and queuing the produces behind it, and their fsyncs are shared. The queue is
//! bounded ([`ServerConfig::max_in_flight`](crate::ServerConfig)): a client that sends faster
//! than its responses are answered is slowed down by TCP.
//!
//! Any error ends this connection only, with one log line naming the peer.

use std::io::BufReader;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use bytes::Bytes;

use crate::api::Pending;
use crate::broker::Broker;
use crate::error::ConnectionError;
use crate::frame::read_frame;

/// Socket buffer for reads: most requests fit, big produces read straight into their frame.
const READ_BUFFER: usize = 64 * 1024;

/// Serves `stream` until the peer leaves or an error; returns when both threads are done.
pub(crate) fn serve(broker: Arc<Broker>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let writer = match stream.try_clone() {
        Ok(writer) => writer,
        Err(error) => {
            log::warn!("{peer}: cannot clone the socket: {error}");
            return;
        }
    };
    let (queue, pending) = sync_channel(broker.config.max_in_flight.max(1));
    let writing = {
        let broker = broker.clone();
        std::thread::Builder::new()
            .name("rill-conn-write".into())
            .spawn(move || write_loop(&broker, writer, pending, peer))
    };
    let writing = match writing {
        Ok(handle) => handle,
        Err(error) => {
            log::warn!("{peer}: cannot start a writer thread: {error}");
            return;
        }
    };
    if let Err(error) = read_loop(&broker, &stream, queue, peer) {
        log::warn!("closing connection from {peer}: {error}");
    }
    // The writer finishes what was queued before the error, then closes its side.
    let _ = writing.join();
    let _ = stream.shutdown(Shutdown::Both);
}

fn read_loop(
    broker: &Broker,
    stream: &TcpStream,
    queue: SyncSender<Pending>,
    peer: SocketAddr,
) -> Result<(), ConnectionError> {
    let mut reader = BufReader::with_capacity(READ_BUFFER, stream);
    let mut session = broker.session(peer);
    while let Some(frame) = read_frame(&mut reader, broker.config.max_request_bytes)? {
        let pending = broker.handle(&mut session, Bytes::from(frame))?;
        if queue.send(pending).is_err() {
            // The writer stopped (its socket failed); it logged why.
            break;
        }
    }
    Ok(())
}

fn write_loop(broker: &Broker, stream: TcpStream, pending: Receiver<Pending>, peer: SocketAddr) {
    // No `BufWriter`: it would copy fetched batches into its buffer. Each response is one
    // vectored write straight to the socket.
    let result = (|| -> Result<(), ConnectionError> {
        while let Ok(next) = pending.recv() {
            if let Some(response) = broker.finish(next)? {
                response.write_to(&mut &stream)?;
            }
        }
        Ok(())
    })();
    if let Err(error) = result {
        // A client that leaves while its answer is on the way is ordinary, not worth a warning.
        let gone = matches!(&error, ConnectionError::Io(e) if matches!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
        ));
        if gone {
            log::debug!("{peer} left before its response was written: {error}");
        } else {
            log::warn!("closing connection from {peer}: {error}");
        }
        let _ = stream.shutdown(Shutdown::Both);
    }
}
