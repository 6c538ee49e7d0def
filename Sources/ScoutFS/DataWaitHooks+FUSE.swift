public import ScoutFUSE

extension DataWaitHooks {
    /// The hooks of a FUSE request: declaring the wait lets the session start a spare reader
    /// thread (so the INTERRUPT, and the stage that ends the wait, are still read), and
    /// FUSE_INTERRUPT ends the wait with EINTR.
    public init(_ context: RequestContext) {
        self.init(
            willBlock: { context.willBlock() },
            onInterrupt: { handler in context.onInterrupt(handler) },
            isInterrupted: { context.isInterrupted })
    }
}
