//! What every fake server shares: its own thread and runtime, listeners on
//! 127.0.0.1 with TCP_NODELAY (without it, each reply on a kept-alive
//! connection stalls ~40 ms on delayed ACKs). Waiting with a deadline is in
//! [`crate::poll`].

use std::future::Future;

use tokio::net::{TcpListener, TcpStream};

/// Runs `main` on a fresh runtime on its own thread, so tests may block.
/// `main` gets a sender for the address the fake wants to publish.
pub fn in_background<T, F, Fut>(main: F) -> T
where
    T: Send + 'static,
    F: FnOnce(std::sync::mpsc::Sender<T>) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(main(tx));
    });
    rx.recv().expect("the fake server did not start")
}

pub async fn local_listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// Serves an axum app until the process ends.
pub async fn http(listener: TcpListener, app: axum::Router) {
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await.unwrap();
}

/// Accepts connections forever, one task each.
pub async fn accept_each<F, Fut>(listener: TcpListener, handle: F)
where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(handle(tcp));
    }
}
