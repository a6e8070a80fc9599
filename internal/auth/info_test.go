package auth

import (
	"context"
	"testing"
)

func TestInfoDescribesTheGrantWithoutRefreshing(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, nil)
	s := h.source(nil)
	if info, err := s.Info(ctx); err != nil || info.Stored {
		t.Fatalf("nothing stored: %+v %v", info, err)
	}
	h.grant(s)
	if _, _, err := s.Token(ctx); err != nil {
		t.Fatal(err)
	}
	calls := h.sf.TokenCalls("refresh_token")
	info, err := s.Info(ctx)
	if err != nil || !info.Stored || !info.Usable || info.Dead || info.RefreshedAt.IsZero() || info.ConnectedAt.IsZero() ||
		info.InstanceURL != h.sf.URL() || info.SessionExpiry.IsZero() {
		t.Fatalf("after a refresh: %+v %v", info, err)
	}
	if h.sf.TokenCalls("refresh_token") != calls {
		t.Fatal("Info called the token endpoint")
	}
	h.sf.RevokeAll()
	h.sf.ExpireAccessTokens()
	if err := s.Invalidate(ctx, h.stored().AccessToken); err == nil {
		t.Fatal("a refresh with a revoked grant succeeded")
	}
	if info, _ := s.Info(ctx); info.Usable || !info.Dead || info.DeadReason == "" {
		t.Fatalf("after invalid_grant: %+v", info)
	}
	if err := s.Disconnect(ctx); err != nil {
		t.Fatal(err)
	}
	if info, _ := s.Info(ctx); info.Stored {
		t.Fatalf("after disconnect: %+v", info)
	}
}
